// etcd for the tests, from go.etcd.io/etcd/server/v3 at the version k8s.io/apiserver requires
// (the same entry point as upstream etcd's main.go).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
