package main

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"

	"strait.dev/strait/broker"
	"strait.dev/strait/lighthouse"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
)

func TestParseFlagsDefaults(t *testing.T) {
	o, err := parseFlags([]string{"--cluster-id=c1"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	want := lighthouse.Config{
		ClusterID: "c1", Namespace: v1.ComponentNamespace, BrokerSecret: broker.SecretName,
		LeaderElection: true, MetricsAddr: lighthouse.DefaultMetricsAddr, HealthAddr: defaultHealthAddr,
	}
	if o.cfg != want || o.kubeconfig != "" || o.showVersion {
		t.Errorf("got %+v (kubeconfig %q, version %v), want %+v", o.cfg, o.kubeconfig, o.showVersion, want)
	}
}

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		// wantErr is in the error, or on stderr for the flag package's own
		// errors; empty: no error.
		wantErr string
		check   func(o options) bool
	}{
		{name: "all set", args: []string{"--cluster-id=c-2", "--namespace=ns", "--broker-secret=s", "--leader-elect=false",
			"--metrics-addr=0", "--health-addr=127.0.0.1:9000", "--kubeconfig=/k"},
			check: func(o options) bool {
				return o.cfg == lighthouse.Config{ClusterID: "c-2", Namespace: "ns", BrokerSecret: "s", MetricsAddr: "0", HealthAddr: "127.0.0.1:9000"} &&
					o.kubeconfig == "/k"
			}},
		{name: "version needs no cluster ID", args: []string{"--version"}, check: func(o options) bool { return o.showVersion }},
		{name: "no cluster ID", args: nil, wantErr: "--cluster-id is required"},
		{name: "cluster ID not a label", args: []string{"--cluster-id=C_1"}, wantErr: "--cluster-id: cluster ID \"C_1\" is not an RFC 1123 label"},
		{name: "empty namespace", args: []string{"--cluster-id=c1", "--namespace="}, wantErr: "--namespace must not be empty"},
		{name: "empty broker secret", args: []string{"--cluster-id=c1", "--broker-secret="}, wantErr: "--broker-secret must not be empty"},
		{name: "stray argument", args: []string{"--cluster-id=c1", "c2"}, wantErr: `unexpected arguments ["c2"]`},
		{name: "unknown flag", args: []string{"--cluster-id=c1", "--node-name=n1"}, wantErr: "flag provided but not defined: -node-name"},
		{name: "bad boolean", args: []string{"--cluster-id=c1", "--leader-elect=maybe"}, wantErr: `invalid boolean value "maybe" for -leader-elect`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			o, err := parseFlags(tc.args, &stderr)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("error %v (stderr %q)", err, stderr.String())
				}
				if !tc.check(o) {
					t.Errorf("parsed %+v", o)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) && !strings.Contains(stderr.String(), tc.wantErr) {
				t.Errorf("error %q, stderr %q; want %q in either", err, stderr.String(), tc.wantErr)
			}
		})
	}
}

func TestParseFlagsHelp(t *testing.T) {
	var stderr bytes.Buffer
	if _, err := parseFlags([]string{"-h"}, &stderr); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("got %v, want flag.ErrHelp", err)
	}
	for _, f := range []string{"-cluster-id", "-namespace", "-broker-secret", "-leader-elect", "-metrics-addr", "-health-addr", "-kubeconfig", "-version"} {
		if !strings.Contains(stderr.String(), f) {
			t.Errorf("usage lacks %s:\n%s", f, stderr.String())
		}
	}
}
