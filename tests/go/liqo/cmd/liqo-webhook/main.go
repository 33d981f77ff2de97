// liqo-webhook: Liqo v1.2's own NamespaceOffloading validating webhook (nsoffwh.New()), unmodified,
// on controller-runtime's webhook server at /validate/namespace-offloading, as Liqo's cmd/webhook
// serves it. Only this one webhook: the others in Liqo's webhook binary read objects of a full Liqo
// installation (ForeignClusters, Tenants, ...), and this one reads none, so no manager is needed.
package main

import (
	"flag"
	"os"

	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	nsoffwh "github.com/liqotech/liqo/pkg/webhooks/namespaceoffloading"
)

func main() {
	host := flag.String("host", "127.0.0.1", "The address the webhook server binds to")
	port := flag.Int("webhook-port", 9443, "The port the webhook server binds to")
	certDir := flag.String("cert-dir", "", "Directory holding the serving certificate and key")
	certName := flag.String("cert-name", "tls.crt", "The serving certificate's file name in --cert-dir")
	keyName := flag.String("key-name", "tls.key", "The serving key's file name in --cert-dir")
	klog.InitFlags(nil)
	flag.Parse()
	log.SetLogger(klog.NewKlogr())

	srv := webhook.NewServer(webhook.Options{
		Host:     *host,
		Port:     *port,
		CertDir:  *certDir,
		CertName: *certName,
		KeyName:  *keyName,
	})
	srv.Register("/validate/namespace-offloading", nsoffwh.New())

	klog.Infof("serving Liqo's NamespaceOffloading webhook on https://%s:%d/validate/namespace-offloading", *host, *port)
	if err := srv.Start(ctrl.SetupSignalHandler()); err != nil {
		klog.Error(err)
		os.Exit(1)
	}
}
