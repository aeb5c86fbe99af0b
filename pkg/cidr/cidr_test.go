package cidr

import (
	"strings"
	"testing"
)

func TestParseList(t *testing.T) {
	got, err := ParseList(" 10.1.2.3/16, fd00:10:1::5/64,,")
	if err != nil || Join(got) != "10.1.0.0/16,fd00:10:1::/64" {
		t.Fatalf("got %v, %v", got, err)
	}
	if got, err := ParseAll([]string{"10.1.0.0/16,10.2.0.0/16", "10.3.0.0/16"}); err != nil || len(got) != 3 {
		t.Fatalf("ParseAll: %v, %v", got, err)
	}
	for _, bad := range []string{"10.1.0.0/33", "10.1.0.0", "garbage", "10.1.0.0/16,nope"} {
		if _, err := ParseList(bad); err == nil || !strings.Contains(err.Error(), "invalid CIDR") {
			t.Errorf("%q: got %v, want an invalid CIDR error", bad, err)
		}
	}
	if got, _ := ParseList(""); len(got) != 0 {
		t.Errorf("empty list parsed as %v", got)
	}
}
