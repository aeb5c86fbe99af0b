// Command etcd is etcd's own server entry point, built from the etcd module at
// the version Kubernetes pins, so that tests never download an etcd binary.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
