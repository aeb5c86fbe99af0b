package main

import (
	"io"
	"strings"
	"testing"
)

func TestParseFlags(t *testing.T) {
	env := func(k string) string {
		if k == "NODE_NAME" {
			return "n1"
		}
		return ""
	}
	o, err := parseFlags([]string{"--cluster-id=c1", "--global-cidr=242.1.0.0/16"}, io.Discard, env)
	if err != nil {
		t.Fatal(err)
	}
	if o.cfg.NodeName != "n1" || o.cfg.GlobalCIDR.String() != "242.1.0.0/16" || o.cfg.MetricsAddr != ":9478" || !o.cfg.LeaderElection {
		t.Errorf("parsed %+v", o.cfg)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--global-cidr=242.1.0.0/16"}, "--cluster-id is required"},
		{[]string{"--cluster-id=c1"}, "--global-cidr is required"},
		{[]string{"--cluster-id=c1", "--global-cidr=242.1.0.0"}, "--global-cidr: "},
		{[]string{"--cluster-id=c1", "--global-cidr=242.1.0.0/31"}, "--global-cidr: global CIDR 242.1.0.0/31: too small"},
		{[]string{"--cluster-id=c1", "--global-cidr=242.1.0.0/16", "--node-name="}, "--node-name is required"},
	} {
		_, err := parseFlags(tc.args, io.Discard, env)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.args, err, tc.want)
		}
	}
}
