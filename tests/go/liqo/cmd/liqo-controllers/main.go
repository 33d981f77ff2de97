// liqo-controllers: Liqo v1.2's own offloading reconcilers, unmodified, in one controller-runtime
// manager, wired as cmd/liqo-controller-manager/modules/offloading.go wires them:
//   - namespaceoffloading: NamespaceOffloadingReconciler (the consumer side);
//   - virtualnode: the VirtualNode reconciler, which makes each remote cluster's NamespaceMap
//     (the consumer side);
//   - namespacemap: NamespaceMapReconciler, which creates the remote namespaces of replicated
//     NamespaceMaps (the provider side).
//
// Unlike Liqo's manager it uses controller-runtime's default REST mapper: Liqo's own
// (mapper.LiqoMapperProvider) insists on the core, ipam, networking and authentication groups too,
// and these reconcilers need only the offloading CRDs.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/metrics/server"

	liqov1beta1 "github.com/liqotech/liqo/apis/core/v1beta1"
	offloadingv1beta1 "github.com/liqotech/liqo/apis/offloading/v1beta1"
	mapsctrl "github.com/liqotech/liqo/pkg/liqo-controller-manager/offloading/namespacemap-controller"
	nsoffctrl "github.com/liqotech/liqo/pkg/liqo-controller-manager/offloading/namespaceoffloading-controller"
	virtualnodectrl "github.com/liqotech/liqo/pkg/liqo-controller-manager/offloading/virtualnode-controller"
	tenantnamespace "github.com/liqotech/liqo/pkg/tenantNamespace"
	argsutils "github.com/liqotech/liqo/pkg/utils/args"
	flagsutils "github.com/liqotech/liqo/pkg/utils/flags"
	"github.com/liqotech/liqo/pkg/utils/restcfg"
)

var scheme = runtime.NewScheme()

func init() {
	_ = clientgoscheme.AddToScheme(scheme)
	_ = liqov1beta1.AddToScheme(scheme)
	_ = offloadingv1beta1.AddToScheme(scheme)
}

func main() {
	// --cluster-id, as Liqo's controller manager takes it (validated as a DNS label by ReadOrDie).
	clusterIDFlags := argsutils.NewClusterIDFlags(true, nil)
	controllers := pflag.StringSlice("controllers", []string{"namespaceoffloading", "virtualnode"},
		"Which reconcilers run: namespaceoffloading, virtualnode, namespacemap")
	probeAddr := pflag.String("health-probe-address", "0", "The address the health probe endpoint binds to (0: off)")
	metricsAddr := pflag.String("metrics-address", "0", "The address the metrics endpoint binds to (0: off)")
	// --client-qps, --client-max-burst, --client-timeout: Liqo's own rate-limit flags.
	restcfg.InitFlags(pflag.CommandLine)
	flagsutils.InitKlogFlags(pflag.CommandLine)
	// controller-runtime's --kubeconfig is a Go flag; $KUBECONFIG works too.
	pflag.CommandLine.AddGoFlagSet(flag.CommandLine)
	pflag.Parse()
	log.SetLogger(klog.NewKlogr())

	if err := run(clusterIDFlags.ReadOrDie(), *controllers, *probeAddr, *metricsAddr); err != nil {
		klog.Error(err)
		os.Exit(1)
	}
}

func run(clusterID liqov1beta1.ClusterID, controllers []string, probeAddr, metricsAddr string) error {
	ctx := ctrl.SetupSignalHandler()
	config := restcfg.SetRateLimiter(ctrl.GetConfigOrDie())

	mgr, err := ctrl.NewManager(config, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                server.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress: probeAddr,
	})
	if err != nil {
		return fmt.Errorf("manager creation failed: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}

	for _, c := range controllers {
		if err := setup(ctx, mgr, clusterID, strings.TrimSpace(c)); err != nil {
			return err
		}
	}

	klog.Infof("starting Liqo's %s reconcilers (cluster id %q, client QPS %v, burst %v)",
		strings.Join(controllers, ", "), clusterID, config.QPS, config.Burst)
	return mgr.Start(ctx)
}

func setup(ctx context.Context, mgr ctrl.Manager, clusterID liqov1beta1.ClusterID, name string) error {
	switch name {
	case "namespaceoffloading":
		r := &nsoffctrl.NamespaceOffloadingReconciler{
			Client:       mgr.GetClient(),
			Recorder:     mgr.GetEventRecorderFor("namespaceoffloading-controller"),
			LocalCluster: clusterID,
		}
		return r.SetupWithManager(mgr)
	case "virtualnode":
		clientset, err := kubernetes.NewForConfig(mgr.GetConfig())
		if err != nil {
			return err
		}
		r, err := virtualnodectrl.NewVirtualNodeReconciler(ctx, mgr.GetClient(), mgr.GetScheme(),
			mgr.GetEventRecorderFor("virtualnode-controller"), clusterID,
			tenantnamespace.NewCachedManager(ctx, clientset, scheme))
		if err != nil {
			return err
		}
		return r.SetupWithManager(mgr)
	case "namespacemap":
		r := &mapsctrl.NamespaceMapReconciler{Client: mgr.GetClient()}
		return r.SetupWithManager(mgr)
	default:
		return fmt.Errorf("unknown controller %q (known: namespaceoffloading, virtualnode, namespacemap)", name)
	}
}
