package coredns

import (
	"slices"
	"strings"
	"testing"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/plugin/pkg/fall"
)

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		corefile string
		keys     []string // server block keys
		want     config
		err      string // a part of the error; "" for none
	}{
		{corefile: `lighthouse`, want: config{zones: []string{"clusterset.local."}, namespace: "strait-system", ttl: 5}},
		// The zone defaults to clusterset.local even in a root server block,
		// where the plugin sits in front of kubernetes.
		{corefile: `lighthouse`, keys: []string{".:53"}, want: config{zones: []string{"clusterset.local."}, namespace: "strait-system", ttl: 5}},
		{corefile: `lighthouse example.org Other.Zone`, want: config{zones: []string{"example.org.", "other.zone."}, namespace: "strait-system", ttl: 5}},
		{corefile: `lighthouse {
			kubeconfig /etc/k.conf ctx
			namespace other
			cluster-id c1
			ttl 30
			fallthrough
		}`, want: config{zones: []string{"clusterset.local."}, kubeconfig: "/etc/k.conf", context: "ctx", namespace: "other", clusterID: "c1", ttl: 30, fall: fall.Root}},
		{corefile: "lighthouse {\nttl 0\n}", want: config{zones: []string{"clusterset.local."}, namespace: "strait-system", ttl: 0}},
		{corefile: "lighthouse {\nttl 3601\n}", err: "ttl \"3601\": want seconds from 0 to 3600"},
		{corefile: "lighthouse {\nttl -1\n}", err: "want seconds"},
		{corefile: "lighthouse {\nttl five\n}", err: "want seconds"},
		{corefile: "lighthouse {\nttl\n}", err: "ttl takes one number"},
		{corefile: "lighthouse {\nkubeconfig\n}", err: "kubeconfig takes a path"},
		{corefile: "lighthouse {\nkubeconfig a b c\n}", err: "kubeconfig takes a path"},
		{corefile: "lighthouse {\nnamespace\n}", err: "namespace takes one"},
		{corefile: "lighthouse {\ncluster-id a b\n}", err: "cluster-id takes one"},
		{corefile: "lighthouse {\nupstream 1.1.1.1\n}", err: `unknown option "upstream"`},
		{corefile: "lighthouse\nlighthouse", err: "this plugin can only be used once per Server Block"},
	} {
		t.Run(tc.corefile, func(t *testing.T) {
			c := caddy.NewTestController("dns", tc.corefile)
			c.ServerBlockKeys = tc.keys
			got, err := parseConfig(c)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("error %v", err)
			}
			if !slices.Equal(got.zones, tc.want.zones) || got.kubeconfig != tc.want.kubeconfig || got.context != tc.want.context ||
				got.namespace != tc.want.namespace || got.clusterID != tc.want.clusterID || got.ttl != tc.want.ttl || !got.fall.Equal(tc.want.fall) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}
