package inventory

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/pager"

	"github.com/routepush/routepush/route"
)

// KubeOptions choose the cluster and the nodes to read, as kubectl's flags
// of the same names do.
type KubeOptions struct {
	// Kubeconfig is an explicit kubeconfig file. Empty means what kubectl
	// does: $KUBECONFIG (its files merged), else ~/.kube/config, else the
	// in-cluster service account when run inside a pod.
	Kubeconfig string
	Context    string
	// Selector is a label selector limiting the nodes, as kubectl -l.
	Selector string
	// ChunkSize is how many nodes one list request returns at most.
	ChunkSize int64
	// Timeout bounds each API request; 0 means none.
	Timeout time.Duration
}

// DefaultChunkSize is kubectl's --chunk-size default.
const DefaultChunkSize = 500

// Cluster is the Kubernetes API server the node table comes from.
type Cluster struct {
	// Name says which cluster this is in messages: the context, cluster
	// and server, as the kubeconfig names them.
	Name   string
	Client kubernetes.Interface
	// WatchClient is Client without the per-request timeout, for
	// informers: a watch is one long request, which the timeout would
	// cut every --request-timeout.
	WatchClient kubernetes.Interface
	selector    string
	chunk       int64
	// listed keeps, per node of the last table (Nodes, TableOf) and as
	// the condition writes left it, what MarkNetworkAvailable and
	// MarkNetworkUnavailable decide on, so that they ask the API again
	// only after a conflict. routepush watch builds tables and writes
	// conditions from different goroutines: mu guards it.
	mu     sync.Mutex
	listed map[string]listedNode
}

// lastSeen returns what the cluster last saw of a node, if anything.
func (c *Cluster) lastSeen(name string) (listedNode, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.listed[name]
	return n, ok && n.resourceVersion != ""
}

// seen notes a node as the API returned it.
func (c *Cluster) seen(n *corev1.Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.listed[n.Name] = listedNode{resourceVersion: n.ResourceVersion, networkCond: networkCondition(n)}
}

type listedNode struct {
	resourceVersion string
	networkCond     *corev1.NodeCondition
}

// NewCluster connects to the cluster the options choose. Nothing is sent
// yet; a kubeconfig that cannot be used is an error naming its context.
func NewCluster(o KubeOptions) (*Cluster, error) {
	if _, err := labels.Parse(o.Selector); err != nil {
		return nil, fmt.Errorf("--selector %q: %w", o.Selector, err)
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.Kubeconfig
	overrides := &clientcmd.ConfigOverrides{CurrentContext: o.Context}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
	if o.Context != "" {
		if err := checkContext(rules, cc, o.Context); err != nil {
			return nil, err
		}
	}
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, kubeconfigError(rules, err)
	}
	cfg.Timeout = o.Timeout
	cfg.UserAgent = "routepush"
	// kubectl's rate, not client-go's default of 5/s: marking thousands of
	// nodes must not take minutes. The server's priority and fairness
	// still protects it.
	cfg.QPS, cfg.Burst = 50, 100
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes %s: %w", describe(cc, o.Context, cfg), err)
	}
	long := rest.CopyConfig(cfg)
	long.Timeout = 0
	watchClient, err := kubernetes.NewForConfig(long)
	if err != nil {
		return nil, fmt.Errorf("kubernetes %s: %w", describe(cc, o.Context, cfg), err)
	}
	c := NewClusterForClient(describe(cc, o.Context, cfg), client, o)
	c.WatchClient = watchClient
	return c, nil
}

// NewClusterForClient wraps a client made elsewhere, such as a fake one.
func NewClusterForClient(name string, client kubernetes.Interface, o KubeOptions) *Cluster {
	chunk := o.ChunkSize
	if chunk <= 0 {
		chunk = DefaultChunkSize
	}
	return &Cluster{Name: name, Client: client, WatchClient: client, selector: o.Selector, chunk: chunk, listed: map[string]listedNode{}}
}

// describe names the cluster a client config points at the way an operator
// finds it in their kubeconfig: `context "prod" (cluster "prod-eu",
// https://10.0.0.1:6443)`.
func describe(cc clientcmd.ClientConfig, context string, cfg *rest.Config) string {
	raw, err := cc.RawConfig()
	if context == "" && err == nil {
		context = raw.CurrentContext
	}
	server := cfg.Host
	if u, err := url.Parse(cfg.Host); err == nil && u.Host != "" {
		server = u.Scheme + "://" + u.Host
	}
	if context == "" {
		return fmt.Sprintf("in-cluster (%s)", server)
	}
	if c, ok := raw.Contexts[context]; ok && c.Cluster != "" {
		return fmt.Sprintf("context %q (cluster %q, %s)", context, c.Cluster, server)
	}
	return fmt.Sprintf("context %q (%s)", context, server)
}

// kubeconfigFiles are the files a kubeconfig was read from, for messages.
func kubeconfigFiles(rules *clientcmd.ClientConfigLoadingRules) string {
	if rules.ExplicitPath != "" {
		return rules.ExplicitPath
	}
	return strings.Join(rules.GetLoadingPrecedence(), ", ")
}

// checkContext fails, listing the contexts there are, when the kubeconfig
// has no context of the name asked for.
func checkContext(rules *clientcmd.ClientConfigLoadingRules, cc clientcmd.ClientConfig, context string) error {
	raw, err := cc.RawConfig()
	if err != nil {
		return kubeconfigError(rules, err)
	}
	if _, ok := raw.Contexts[context]; ok {
		return nil
	}
	names := slices.Sorted(maps.Keys(raw.Contexts))
	if len(names) == 0 {
		names = []string{"none"}
	}
	return fmt.Errorf("kubernetes: context %q is not in %s (contexts: %s)", context, kubeconfigFiles(rules), strings.Join(names, ", "))
}

// kubeconfigError explains why no client config could be made.
func kubeconfigError(rules *clientcmd.ClientConfigLoadingRules, err error) error {
	if clientcmd.IsEmptyConfig(err) {
		return fmt.Errorf("kubernetes: no kubeconfig found (looked in %s) and not running in a pod: pass --kubeconfig, set KUBECONFIG, or use --inventory alone", kubeconfigFiles(rules))
	}
	return fmt.Errorf("kubernetes: kubeconfig %s: %w", kubeconfigFiles(rules), err)
}

// apiError explains a failed API request in terms of what to fix.
func (c *Cluster) apiError(what string, err error) error {
	var hint string
	switch {
	case apierrors.IsUnauthorized(err):
		hint = " (401: the kubeconfig's token or certificate was refused; is it expired or for another cluster?)"
	case apierrors.IsForbidden(err):
		hint = " (403: bind the ClusterRole in configs/rbac.yaml to this user)"
	}
	return fmt.Errorf("kubernetes %s: %s: %w%s", c.Name, what, err, hint)
}

// Table is the node table of a run, with what the source said beside it.
type Table struct {
	Source string
	// Nodes without a pod CIDR yet (the IPAM has not assigned one) are in
	// it too: they receive routes but are no destination.
	Nodes []Node
	// Unselected are inventory nodes the selector left out.
	Unselected []string
	// Unknown are inventory nodes the API does not know, taken from the
	// inventory alone (--allow-unknown-nodes).
	Unknown []string
	// Pages is how many list requests the API answered.
	Pages int
}

// Nodes reads the selected nodes from the API and, when an inventory file
// is given, takes SSH access from it: its entry of the same name if there
// is one, else the node's first internal IP and the file's defaults. An
// inventory node the API does not know is an error unless allowUnknown,
// which takes it from the file alone. Problems with single nodes are
// reported together as a *ValidationError naming each node and field.
func (c *Cluster) Nodes(ctx context.Context, inv *File, allowUnknown bool) (*Table, error) {
	var (
		kns   []*corev1.Node
		pages int
	)
	p := pager.New(pager.SimplePageFunc(func(opts metav1.ListOptions) (runtime.Object, error) {
		pages++
		return c.Client.CoreV1().Nodes().List(ctx, opts)
	}))
	p.PageSize = c.chunk
	err := p.EachListItem(ctx, metav1.ListOptions{LabelSelector: c.selector}, func(obj runtime.Object) error {
		kn, ok := obj.(*corev1.Node)
		if !ok {
			return fmt.Errorf("list returned a %T, not a Node", obj)
		}
		kns = append(kns, kn)
		return nil
	})
	if err != nil {
		return nil, c.apiError("listing nodes", err)
	}
	t, err := c.TableOf(ctx, kns, inv, allowUnknown)
	if t != nil {
		t.Pages = pages
	}
	return t, err
}

// TableOf is Nodes on Node objects the caller already has (an informer's
// store): the selected nodes, in the order given, with SSH access from the
// inventory as Nodes takes it.
func (c *Cluster) TableOf(ctx context.Context, kns []*corev1.Node, inv *File, allowUnknown bool) (*Table, error) {
	t := &Table{Source: "kubernetes " + c.Name}
	var errs []error
	// A new map each time: a node that left is forgotten (a watcher runs
	// for months while nodes come and go).
	listed := make(map[string]listedNode, len(kns))
	for _, kn := range kns {
		n, nerrs := nodeFromAPI(kn)
		errs = append(errs, nerrs...)
		listed[kn.Name] = listedNode{resourceVersion: kn.ResourceVersion, networkCond: networkCondition(kn)}
		t.Nodes = append(t.Nodes, n)
	}
	c.mu.Lock()
	c.listed = listed
	c.mu.Unlock()
	if inv != nil {
		more, err := c.merge(ctx, t, inv, allowUnknown)
		if err != nil {
			return nil, err
		}
		errs = append(errs, more...)
	}
	if len(errs) == 0 {
		if err := validate(t.Source, t.Nodes, apiFields); err != nil {
			return nil, err
		}
		return t, nil
	}
	return nil, &ValidationError{Source: t.Source, Errs: errs}
}

// Selector is the label selector the cluster's nodes are chosen by.
func (c *Cluster) Selector() string { return c.selector }

// nodeFromAPI takes a Node's internal IPs (the first of each family: the
// kubelet lists its primary address first) and pod CIDRs. They are paired
// by family later, never by position.
func nodeFromAPI(kn *corev1.Node) (Node, []error) {
	// Its address is the Node object's word until an inventory entry
	// vouches for it (merge).
	n := Node{Name: kn.Name, AddressFromAPI: true}
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Node: kn.Name, Index: NoIndex, Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	for i, a := range kn.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		ip, err := netip.ParseAddr(a.Address)
		if err == nil && ip.Zone() != "" {
			// The zone is any text the node's kubelet wrote: refused here,
			// quoted, before a message prints the address as it is.
			err = errors.New("has a zone")
		}
		if err != nil {
			bad(fmt.Sprintf("status.addresses[%d]", i), "InternalIP %q is not an IP address", a.Address)
			continue
		}
		ip = ip.Unmap()
		if _, dup := n.InternalIP(route.FamilyOf(ip)); !dup {
			n.InternalIPs = append(n.InternalIPs, ip)
		}
	}
	cidrs, field := kn.Spec.PodCIDRs, "spec.podCIDRs"
	if len(cidrs) == 0 && kn.Spec.PodCIDR != "" {
		cidrs, field = []string{kn.Spec.PodCIDR}, "spec.podCIDR"
	}
	for i, s := range cidrs {
		p, err := ParseCIDR(s)
		if err != nil {
			if field == "spec.podCIDRs" {
				bad(fmt.Sprintf("%s[%d]", field, i), "%v", err)
			} else {
				bad(field, "%v", err)
			}
			continue
		}
		n.PodCIDRs = append(n.PodCIDRs, p)
	}
	if len(n.InternalIPs) == 0 && len(errs) == 0 {
		bad("status.addresses", "no InternalIP: nothing to route its pods through (has its kubelet registered?)")
	}
	return n, errs
}

// merge takes SSH access for the API's nodes from the inventory, and sorts
// the inventory's other nodes into unselected and unknown.
func (c *Cluster) merge(ctx context.Context, t *Table, inv *File, allowUnknown bool) ([]error, error) {
	var errs []error
	entry := make(map[string]int, len(inv.Nodes))
	for i := range inv.Nodes {
		entry[inv.Nodes[i].Name] = i
	}
	inAPI := make(map[string]bool, len(t.Nodes))
	for k := range t.Nodes {
		n := &t.Nodes[k]
		inAPI[n.Name] = true
		i, ok := entry[n.Name]
		if !ok {
			n.SSH = inv.Defaults
			continue
		}
		e := &inv.Nodes[i]
		n.Address, n.SSH = e.Address, e.SSH
		// An inventory entry that names the node only does not vouch for
		// its address; one with an address or internal IPs (which must
		// then agree with the API) does.
		n.AddressFromAPI = e.Address == "" && !inv.ipsWritten[i]
		fe := func(field, format string, args ...any) {
			errs = append(errs, &FieldError{Node: n.Name, Index: i, Field: field, Msg: fmt.Sprintf(format, args...)})
		}
		if inv.ipsWritten[i] && !slices.Equal(e.InternalIPs, n.InternalIPs) {
			fe("internal_ip", "%s in %s, but the Kubernetes API says %s", list(e.InternalIPs), inv.Path, list(n.InternalIPs))
		}
		if len(e.PodCIDRs) > 0 && !slices.Equal(e.PodCIDRs, n.PodCIDRs) {
			fe("pod_cidr", "%s in %s, but the Kubernetes API says %s", list(e.PodCIDRs), inv.Path, list(n.PodCIDRs))
		}
	}
	var missing []int
	for i := range inv.Nodes {
		if !inAPI[inv.Nodes[i].Name] {
			missing = append(missing, i)
		}
	}
	if len(missing) == 0 {
		return errs, nil
	}
	// With a selector, a missing node may just be one it leaves out.
	var exists map[string]bool
	if c.selector != "" {
		var err error
		if exists, err = c.nodeNames(ctx); err != nil {
			return nil, err
		}
	}
	for _, i := range missing {
		e := inv.Nodes[i]
		switch {
		case exists[e.Name]:
			t.Unselected = append(t.Unselected, e.Name)
		case allowUnknown:
			t.Unknown = append(t.Unknown, e.Name)
			t.Nodes = append(t.Nodes, e)
		default:
			errs = append(errs, &FieldError{Node: e.Name, Index: i, Field: "name",
				Msg: fmt.Sprintf("no node of this name in the cluster (%s); fix the name, or pass --allow-unknown-nodes to route it from the inventory alone", inv.Path)})
		}
	}
	return errs, nil
}

// nodeNames lists the names of all nodes, selected or not.
func (c *Cluster) nodeNames(ctx context.Context) (map[string]bool, error) {
	names := map[string]bool{}
	p := pager.New(pager.SimplePageFunc(func(opts metav1.ListOptions) (runtime.Object, error) {
		return c.Client.CoreV1().Nodes().List(ctx, opts)
	}))
	p.PageSize = c.chunk
	err := p.EachListItem(ctx, metav1.ListOptions{}, func(obj runtime.Object) error {
		if n, ok := obj.(*corev1.Node); ok {
			names[n.Name] = true
		}
		return nil
	})
	if err != nil {
		return nil, c.apiError("listing nodes", err)
	}
	return names, nil
}

// list renders addresses or prefixes for a message.
func list[T fmt.Stringer](xs []T) string {
	if len(xs) == 0 {
		return "none"
	}
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = x.String()
	}
	return strings.Join(s, ", ")
}
