package testpod

import (
	"slices"
	"testing"
)

func TestPortsSet(t *testing.T) {
	for _, tc := range []struct {
		in      []string // one Set call each
		want    Ports
		wantErr bool
	}{
		{in: []string{"8080"}, want: Ports{8080}},
		{in: []string{"8080,8081", "9000"}, want: Ports{8080, 8081, 9000}},
		{in: []string{" 1 , 65535 "}, want: Ports{1, 65535}},
		{in: []string{""}, wantErr: true},
		{in: []string{"http"}, wantErr: true},
		{in: []string{"0"}, wantErr: true},
		{in: []string{"65536"}, wantErr: true},
		{in: []string{"-1"}, wantErr: true},
		{in: []string{"80,,81"}, wantErr: true},
		{in: []string{"80,"}, wantErr: true},
	} {
		var p Ports
		var err error
		for _, s := range tc.in {
			if err = p.Set(s); err != nil {
				break
			}
		}
		if tc.wantErr {
			if err == nil {
				t.Errorf("Set(%q) = %v, want an error", tc.in, p)
			}
			continue
		}
		if err != nil || !slices.Equal(p, tc.want) {
			t.Errorf("Set(%q) = %v, %v; want %v", tc.in, p, err, tc.want)
		}
	}
}

func TestPortsAddrs(t *testing.T) {
	p := Ports{8080, 9000}
	if got, want := p.Addrs(), []string{":8080", ":9000"}; !slices.Equal(got, want) {
		t.Errorf("Addrs() = %q, want %q", got, want)
	}
	if got := p.String(); got != "8080,9000" {
		t.Errorf("String() = %q, want 8080,9000", got)
	}
}
