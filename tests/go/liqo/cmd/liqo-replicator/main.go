// liqo-replicator: the copying Liqo's crd-replicator does for NamespaceMaps between a consumer and a
// provider cluster, without the peering (ForeignCluster, Tenant, identities) the real one needs.
// As internal/crdReplicator/reflection does for a resource of Shared ownership:
//   - spec, labels and annotations go consumer -> provider, into the provider's tenant namespace for
//     the consumer, with the labels the real replicator sets (liqo.io/replication=false,
//     liqo.io/replicated=true, liqo.io/originID and liqo.io/remote-cluster-id = the consumer);
//   - status comes back provider -> consumer, on the status subresource;
//   - a provider copy whose consumer original is gone is deleted.
//
// Unlike the real one it writes the spec by server-side apply and puts no finalizer on the
// consumer's map (so a test can tear down without this process).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"reflect"
	"time"

	kerrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/liqotech/liqo/pkg/consts"
	tenantnamespace "github.com/liqotech/liqo/pkg/tenantNamespace"
)

var namespaceMaps = schema.GroupVersionResource{Group: "offloading.liqo.io", Version: "v1beta1", Resource: "namespacemaps"}

const fieldManager = "liqo-crd-replicator"

type replicator struct {
	consumer, provider     dynamic.Interface
	consumerID, providerID string
	// consumerNS holds the consumer's maps for the provider; providerNS the provider's copies.
	consumerNS, providerNS string
	local, remote          cache.GenericNamespaceLister
	queue                  workqueue.TypedRateLimitingInterface[string]
}

func main() {
	consumerKC := flag.String("consumer-kubeconfig", "", "kubeconfig of the consumer cluster (the one that offloads)")
	providerKC := flag.String("provider-kubeconfig", "", "kubeconfig of the provider cluster")
	consumerID := flag.String("consumer-cluster-id", "", "cluster id of the consumer")
	providerID := flag.String("provider-cluster-id", "", "cluster id of the provider")
	resync := flag.Duration("resync", 30*time.Second, "informer resync period")
	klog.InitFlags(nil)
	flag.Parse()
	if *consumerKC == "" || *providerKC == "" || *consumerID == "" || *providerID == "" {
		fmt.Fprintln(os.Stderr, "liqo-replicator: --consumer-kubeconfig, --provider-kubeconfig, --consumer-cluster-id and --provider-cluster-id are all needed")
		os.Exit(2)
	}
	if err := run(ctrl.SetupSignalHandler(), *consumerKC, *providerKC, *consumerID, *providerID, *resync); err != nil {
		klog.Error(err)
		os.Exit(1)
	}
}

func dynamicFor(kubeconfig string) (dynamic.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", kubeconfig, err)
	}
	cfg.QPS, cfg.Burst = 100, 100
	return dynamic.NewForConfig(cfg)
}

func run(ctx context.Context, consumerKC, providerKC, consumerID, providerID string, resync time.Duration) error {
	consumer, err := dynamicFor(consumerKC)
	if err != nil {
		return err
	}
	provider, err := dynamicFor(providerKC)
	if err != nil {
		return err
	}
	r := &replicator{
		consumer: consumer, provider: provider,
		consumerID: consumerID, providerID: providerID,
		consumerNS: tenantnamespace.NamePrefix + "-" + providerID,
		providerNS: tenantnamespace.NamePrefix + "-" + consumerID,
		queue: workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[string](
			100*time.Millisecond, 5*time.Second)),
	}

	// The maps the consumer asks to replicate towards this provider (as the real replicator selects them).
	localFactory := dynamicinformer.NewFilteredDynamicSharedInformerFactory(consumer, resync, r.consumerNS,
		func(o *metav1.ListOptions) {
			o.LabelSelector = fmt.Sprintf("%s=true,%s=%s", consts.ReplicationRequestedLabel, consts.ReplicationDestinationLabel, providerID)
		})
	// The copies this replicator made on the provider.
	remoteFactory := dynamicinformer.NewFilteredDynamicSharedInformerFactory(provider, resync, r.providerNS,
		func(o *metav1.ListOptions) {
			o.LabelSelector = fmt.Sprintf("%s=%s,%s=true", consts.ReplicationOriginLabel, consumerID, consts.ReplicationStatusLabel)
		})
	localInf := localFactory.ForResource(namespaceMaps)
	remoteInf := remoteFactory.ForResource(namespaceMaps)
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    r.enqueue,
		UpdateFunc: func(_, o interface{}) { r.enqueue(o) },
		DeleteFunc: r.enqueue,
	}
	if _, err := localInf.Informer().AddEventHandler(handler); err != nil {
		return err
	}
	if _, err := remoteInf.Informer().AddEventHandler(handler); err != nil {
		return err
	}
	r.local = localInf.Lister().ByNamespace(r.consumerNS)
	r.remote = remoteInf.Lister().ByNamespace(r.providerNS)
	localFactory.Start(ctx.Done())
	remoteFactory.Start(ctx.Done())
	for gvr, ok := range localFactory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("consumer informer for %v did not sync", gvr)
		}
	}
	for gvr, ok := range remoteFactory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("provider informer for %v did not sync", gvr)
		}
	}
	klog.Infof("replicating NamespaceMaps: consumer %q (namespace %s) -> provider %q (namespace %s)",
		consumerID, r.consumerNS, providerID, r.providerNS)

	go func() { <-ctx.Done(); r.queue.ShutDown() }()
	for {
		name, shutdown := r.queue.Get()
		if shutdown {
			return nil
		}
		if err := r.handle(ctx, name); err != nil {
			klog.Errorf("NamespaceMap %s: %v", name, err)
			r.queue.AddRateLimited(name)
		} else {
			r.queue.Forget(name)
		}
		r.queue.Done(name)
	}
}

func (r *replicator) enqueue(obj interface{}) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	if o, ok := obj.(metav1.Object); ok {
		r.queue.Add(o.GetName())
	}
}

func (r *replicator) handle(ctx context.Context, name string) error {
	obj, err := r.local.Get(name)
	if kerrors.IsNotFound(err) || (err == nil && obj.(*unstructured.Unstructured).GetDeletionTimestamp() != nil) {
		err = r.provider.Resource(namespaceMaps).Namespace(r.providerNS).Delete(ctx, name, metav1.DeleteOptions{})
		if err == nil {
			klog.Infof("deleted the provider's copy of NamespaceMap %s", name)
		}
		if kerrors.IsNotFound(err) {
			return nil
		}
		return err
	}
	if err != nil {
		return err
	}
	local := obj.(*unstructured.Unstructured)

	// Spec out: server-side apply of what the replicator owns on the provider.
	labels := map[string]string{}
	for k, v := range local.GetLabels() {
		labels[k] = v
	}
	labels[consts.ReplicationRequestedLabel] = "false"
	labels[consts.ReplicationStatusLabel] = "true"
	labels[consts.ReplicationOriginLabel] = r.consumerID
	labels[consts.RemoteClusterID] = r.consumerID
	delete(labels, consts.LocalResourceOwnership)
	spec, _, _ := unstructured.NestedMap(local.Object, "spec")
	if spec == nil {
		spec = map[string]interface{}{}
	}
	apply := &unstructured.Unstructured{Object: map[string]interface{}{"spec": spec}}
	apply.SetAPIVersion("offloading.liqo.io/v1beta1")
	apply.SetKind("NamespaceMap")
	apply.SetNamespace(r.providerNS)
	apply.SetName(name)
	apply.SetLabels(labels)
	if a := local.GetAnnotations(); len(a) > 0 {
		apply.SetAnnotations(a)
	}
	remote, err := r.provider.Resource(namespaceMaps).Namespace(r.providerNS).Apply(ctx, name, apply,
		metav1.ApplyOptions{FieldManager: fieldManager, Force: true})
	if err != nil {
		return fmt.Errorf("applying the spec on the provider: %w", err)
	}

	// Status back: the provider's NamespaceMapReconciler writes currentMapping there.
	remoteStatus, _, _ := unstructured.NestedMap(remote.Object, "status")
	localStatus, _, _ := unstructured.NestedMap(local.Object, "status")
	if len(remoteStatus) == 0 && len(localStatus) == 0 || reflect.DeepEqual(remoteStatus, localStatus) {
		return nil
	}
	updated := local.DeepCopy()
	if remoteStatus == nil {
		unstructured.RemoveNestedField(updated.Object, "status")
	} else if err := unstructured.SetNestedMap(updated.Object, remoteStatus, "status"); err != nil {
		return err
	}
	if _, err := r.consumer.Resource(namespaceMaps).Namespace(r.consumerNS).UpdateStatus(ctx, updated, metav1.UpdateOptions{FieldManager: fieldManager}); err != nil {
		if kerrors.IsConflict(err) {
			return fmt.Errorf("status changed meanwhile, again: %w", err)
		}
		return fmt.Errorf("copying the status back to the consumer: %w", err)
	}
	klog.Infof("copied the status of NamespaceMap %s back to the consumer", name)
	return nil
}
