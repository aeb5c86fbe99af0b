// Package scheme builds the runtime.Scheme every Strait component uses: the
// built-in Kubernetes types plus strait.dev, about.k8s.io (ClusterProperty)
// and multicluster.x-k8s.io (the MCS API).
package scheme

import (
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	aboutv1beta1 "strait.dev/strait/pkg/apis/about.k8s.io/v1beta1"
	straitv1alpha1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
)

// New returns a new scheme with every type Strait reads or writes.
func New() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(straitv1alpha1.AddToScheme(s))
	utilruntime.Must(aboutv1beta1.AddToScheme(s))
	utilruntime.Must(mcsv1beta1.Install(s))
	return s
}
