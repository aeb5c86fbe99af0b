package cable

import (
	"context"
	"strings"
	"testing"

	"strait.dev/strait/pkg/cabledriver"
)

// A driver registers only under a descriptor's name: a driver the rest of
// Strait knows nothing about is a programming error found at start.
func TestRegisterNeedsDescriptor(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "no descriptor") {
			t.Errorf("Register without a descriptor: %v, want a panic naming the missing descriptor", r)
		}
	}()
	Register("ipsec", func(context.Context, Config) (Driver, error) { return nil, nil })
}

func TestOpenUnknown(t *testing.T) {
	if _, err := Open(context.Background(), "ipsec", Config{}); err == nil || !strings.Contains(err.Error(), `"ipsec"`) {
		t.Errorf("Open(ipsec): %v", err)
	}
}

// ConfigFor carries a gateway's settings into the driver's Config.
func TestConfigFor(t *testing.T) {
	got := ConfigFor("strait-cable", 1420, 150, cabledriver.Settings{Port: 4800, VNI: 7, PrivateKey: "k"})
	want := Config{Interface: "strait-cable", MTU: 1420, RouteTable: 150, ListenPort: 4800, VNI: 7, PrivateKey: "k"}
	if got != want {
		t.Errorf("ConfigFor: %+v, want %+v", got, want)
	}
}
