// Package export is "straitctl export service": it makes a Service's
// ServiceExport (multicluster.x-k8s.io/v1beta1) and prints the conditions
// Lighthouse gives it once they settle.
package export

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"strait.dev/strait/pkg/cmd/straitctl/cmdutil"
	"strait.dev/strait/pkg/scheme"
)

// DefaultTimeout bounds the wait for Lighthouse's conditions: Lighthouse
// sets Valid within a reconcile and Ready once the broker stored the
// record, a few seconds on a healthy fabric; a minute leaves room for a
// slow broker without hanging a script.
const DefaultTimeout = time.Minute

// pollInterval is how often the ServiceExport is read while waiting.
const pollInterval = 250 * time.Millisecond

// Options are the flags common to export and unexport.
type Options struct {
	Kube      cmdutil.Kube
	Output    cmdutil.Output
	Namespace string
	Timeout   time.Duration
	Wait      bool
}

func (o *Options) addFlags(cmd *cobra.Command) {
	o.Kube.AddFlags(cmd)
	cmd.Flags().StringVarP(&o.Namespace, "namespace", "n", "", "the Service's namespace (default: the context's)")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", DefaultTimeout, "how long to wait for the ServiceExport to settle")
	cmd.Flags().BoolVar(&o.Wait, "wait", true, "wait until the ServiceExport settles")
}

// client connects and resolves the namespace (-n, else the context's).
func (o *Options) client() (client.Client, string, error) {
	t, err := o.Kube.Target()
	if err != nil {
		return nil, "", err
	}
	c, err := client.New(t.Config, client.Options{Scheme: scheme.New()})
	if err != nil {
		return nil, "", err
	}
	ns := o.Namespace
	if ns == "" {
		ns = t.Namespace
	}
	return c, ns, nil
}

// NewCommand returns the export command.
func NewCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Export a Service to the clusterset",
		Example: `  straitctl export service web -n shop --kubeconfig c1.kubeconfig
  straitctl export service db -n shop --context c2 --timeout 2m -o yaml`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newServiceCommand())
	return cmd
}

func newServiceCommand() *cobra.Command {
	var o Options
	cmd := &cobra.Command{
		Use:   "service <name>",
		Short: "Export a Service: make its ServiceExport and wait for Lighthouse's conditions",
		Long: `export service makes the ServiceExport of a Service (the Service must exist) and
waits, up to --timeout, until Lighthouse has settled its conditions: Valid
false (the Service cannot be exported), or Ready true or false (the export is
at the broker, or failed). It prints the conditions, Conflict included.
Exporting an exported Service changes nothing and prints its conditions.

Exit status 1 when the Service or namespace does not exist, when the export
is not valid or failed, or when the conditions did not settle in time (is
the cluster joined and Lighthouse running?).`,
		Example: `  straitctl export service web -n shop --kubeconfig c1.kubeconfig
  straitctl export service web -n shop --context c1 -o json
  straitctl export service web -n shop --wait=false`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Output.Validate(); err != nil {
				return err
			}
			c, ns, err := o.client()
			if err != nil {
				return err
			}
			return cmdutil.Explain(Export(cmd.Context(), c, ns, args[0], &o, cmd.OutOrStdout(), cmd.ErrOrStderr()))
		},
	}
	o.addFlags(cmd)
	o.Output.AddFlag(cmd)
	return cmd
}

// Export makes the ServiceExport of Service ns/name and, with o.Wait,
// prints its conditions once they settle. Errors: the namespace or the
// Service does not exist; the export is invalid or failed; the conditions
// did not settle within o.Timeout.
func Export(ctx context.Context, c client.Client, ns, name string, o *Options, stdout, stderr io.Writer) error {
	if err := namespaceExists(ctx, c, ns); err != nil {
		return err
	}
	var svc corev1.Service
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &svc); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("no Service %s in namespace %s: create the Service, then export it", name, ns)
		}
		return err
	}
	se := &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	switch err := c.Create(ctx, se); {
	case err == nil:
		fmt.Fprintf(stderr, "ServiceExport %s/%s created\n", ns, name)
	case apierrors.IsAlreadyExists(err):
		fmt.Fprintf(stderr, "ServiceExport %s/%s exists already\n", ns, name)
	case meta.IsNoMatchError(err):
		return errors.New("the cluster has no ServiceExport API (multicluster.x-k8s.io): join it first")
	default:
		return err
	}
	if !o.Wait {
		return nil
	}
	done := cmdutil.NewProgress(stderr).Start(fmt.Sprintf("waiting up to %s for Lighthouse's conditions on ServiceExport %s/%s", o.Timeout, ns, name))
	var settled bool
	err := wait.PollUntilContextTimeout(ctx, pollInterval, o.Timeout, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(se), se); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		settled = Settled(se.Status.Conditions)
		return settled, nil
	})
	done()
	if perr := Print(stdout, se, &o.Output); perr != nil {
		return perr
	}
	if !settled {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil && !wait.Interrupted(err) {
			return err
		}
		return fmt.Errorf("the conditions of ServiceExport %s/%s did not settle within %s: is the cluster joined and strait-lighthouse running?", ns, name, o.Timeout)
	}
	return Verdict(se)
}

// Settled reports whether Lighthouse has given its verdict: Valid false,
// or Ready true or false (Ready Unknown means the record is on its way to
// the broker).
func Settled(conds []metav1.Condition) bool {
	if meta.IsStatusConditionFalse(conds, string(mcsv1beta1.ServiceExportConditionValid)) {
		return true
	}
	ready := meta.FindStatusCondition(conds, string(mcsv1beta1.ServiceExportConditionReady))
	return ready != nil && ready.Status != metav1.ConditionUnknown
}

// Verdict is nil for an export that is valid and ready, and says what is
// wrong otherwise. A Conflict does not fail the export: the clusterset
// uses the oldest export's properties, which Conflict's message names.
func Verdict(se *mcsv1beta1.ServiceExport) error {
	conds := se.Status.Conditions
	if c := meta.FindStatusCondition(conds, string(mcsv1beta1.ServiceExportConditionValid)); c != nil && c.Status == metav1.ConditionFalse {
		return fmt.Errorf("ServiceExport %s/%s is not valid (%s): %s", se.Namespace, se.Name, c.Reason, c.Message)
	}
	if c := meta.FindStatusCondition(conds, string(mcsv1beta1.ServiceExportConditionReady)); c != nil && c.Status == metav1.ConditionFalse {
		return fmt.Errorf("ServiceExport %s/%s is not exported (%s): %s", se.Namespace, se.Name, c.Reason, c.Message)
	}
	return nil
}

// Print writes se's conditions as a table, or se itself as JSON or YAML.
func Print(w io.Writer, se *mcsv1beta1.ServiceExport, out *cmdutil.Output) error {
	se.ManagedFields = nil
	if out.Format != cmdutil.OutputTable {
		return out.Print(w, []cmdutil.Table{{Noun: "exports", Rows: []cmdutil.Row{{Object: se}}}}, false)
	}
	t := cmdutil.Table{Noun: "conditions", Headers: []string{"CONDITION", "STATUS", "REASON", "SINCE", "MESSAGE"}}
	for _, c := range se.Status.Conditions {
		since := ""
		if !c.LastTransitionTime.IsZero() {
			since = c.LastTransitionTime.UTC().Format(time.RFC3339)
		}
		t.Rows = append(t.Rows, cmdutil.Row{Cells: []string{c.Type, string(c.Status), c.Reason, since, c.Message}})
	}
	fmt.Fprintf(w, "ServiceExport %s/%s\n", se.Namespace, se.Name)
	return out.Print(w, []cmdutil.Table{t}, false)
}

// namespaceExists says clearly when ns is not there.
func namespaceExists(ctx context.Context, c client.Client, ns string) error {
	var n corev1.Namespace
	if err := c.Get(ctx, client.ObjectKey{Name: ns}, &n); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("namespace %s does not exist", ns)
		}
		return err
	}
	return nil
}

// NewUnexportCommand returns the unexport command.
func NewUnexportCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "unexport",
		Short:   "Stop exporting a Service to the clusterset",
		Example: `  straitctl unexport service web -n shop --kubeconfig c1.kubeconfig`,
		Args:    cobra.NoArgs,
	}
	cmd.AddCommand(newUnexportServiceCommand())
	return cmd
}

func newUnexportServiceCommand() *cobra.Command {
	var o Options
	cmd := &cobra.Command{
		Use:   "service <name>",
		Short: "Delete a Service's ServiceExport and wait until it is gone",
		Long: `unexport service deletes the ServiceExport of a Service and waits, up to
--timeout, until it is gone. Lighthouse then withdraws the cluster's export
from the broker; the Service itself stays. Exit status 1 when the namespace
does not exist or the Service is not exported.`,
		Example: `  straitctl unexport service web -n shop --kubeconfig c1.kubeconfig
  straitctl unexport service web -n shop --context c2 --timeout 30s`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := o.client()
			if err != nil {
				return err
			}
			return cmdutil.Explain(Unexport(cmd.Context(), c, ns, args[0], &o, cmd.OutOrStdout(), cmd.ErrOrStderr()))
		},
	}
	o.addFlags(cmd)
	return cmd
}

// Unexport deletes the ServiceExport ns/name and, with o.Wait, waits until
// it is gone. Errors: the namespace does not exist; there is no such
// ServiceExport; it is still there after o.Timeout.
func Unexport(ctx context.Context, c client.Client, ns, name string, o *Options, stdout, stderr io.Writer) error {
	if err := namespaceExists(ctx, c, ns); err != nil {
		return err
	}
	se := &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if err := c.Delete(ctx, se); err != nil {
		switch {
		case apierrors.IsNotFound(err):
			return fmt.Errorf("no ServiceExport %s in namespace %s: the Service is not exported", name, ns)
		case meta.IsNoMatchError(err):
			return errors.New("the cluster has no ServiceExport API (multicluster.x-k8s.io): it is not joined")
		}
		return err
	}
	if o.Wait {
		done := cmdutil.NewProgress(stderr).Start(fmt.Sprintf("waiting up to %s for ServiceExport %s/%s to go", o.Timeout, ns, name))
		err := wait.PollUntilContextTimeout(ctx, pollInterval, o.Timeout, true, func(ctx context.Context) (bool, error) {
			err := c.Get(ctx, client.ObjectKeyFromObject(se), se)
			if apierrors.IsNotFound(err) {
				return true, nil
			}
			return false, err
		})
		done()
		if err != nil {
			if wait.Interrupted(err) && ctx.Err() == nil {
				return fmt.Errorf("ServiceExport %s/%s is still there after %s (finalizers %v)", ns, name, o.Timeout, se.Finalizers)
			}
			return err
		}
	}
	fmt.Fprintf(stdout, "ServiceExport %s/%s deleted: Service %s is no longer exported\n", ns, name, name)
	return nil
}
