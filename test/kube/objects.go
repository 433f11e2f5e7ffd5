package kube

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
)

// ApplyRBAC creates the ClusterRoles and bindings of an RBAC file (the
// project's configs/rbac.yaml), binds the read-only user to the reading
// role alone, and waits until the authorizer grants both users what they
// were given: RBAC learns new bindings through a watch, not at once.
func (s *Server) ApplyRBAC(ctx context.Context, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	rbac := s.Admin.RbacV1()
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var raw runtime.RawExtension
		hasMore := dec.Decode(&raw)
		if errors.Is(hasMore, io.EOF) {
			break
		}
		if hasMore != nil {
			return fmt.Errorf("kube: %s: %w", path, hasMore)
		}
		if len(bytes.TrimSpace(raw.Raw)) == 0 {
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(raw.Raw, nil, nil)
		if err != nil {
			return fmt.Errorf("kube: %s: %w", path, err)
		}
		switch o := obj.(type) {
		case *rbacv1.ClusterRole:
			_, err = rbac.ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRoleBinding:
			_, err = rbac.ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
		default:
			err = fmt.Errorf("unexpected %T", obj)
		}
		if err != nil {
			return fmt.Errorf("kube: %s: %w", path, err)
		}
	}
	_, err = rbac.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "routepush-readonly"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "routepush"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: ReadOnlyUser}},
	}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	for _, token := range []string{RoutepushToken, ReadOnlyToken} {
		c, err := kubernetes.NewForConfig(s.RESTConfig(token))
		if err != nil {
			return err
		}
		if err := poll(ctx, 30*time.Second, func() error {
			_, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{Limit: 1})
			return err
		}); err != nil {
			return fmt.Errorf("kube: RBAC never granted listing nodes: %w", err)
		}
	}
	return nil
}

func poll(ctx context.Context, timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Node describes a Node object to create: what a kubelet registers
// (addresses) and what the IPAM assigns (pod CIDRs).
type Node struct {
	Name        string
	Labels      map[string]string
	InternalIPs []netip.Addr
	PodCIDRs    []string // strings: tests store malformed ones too
	// NetworkUnavailable, when set, starts the node with that condition
	// True, as cloud providers and installers do.
	NetworkUnavailable bool
}

// CreateNode creates a Node with its status (addresses, and a
// NetworkUnavailable condition if asked for), as a kubelet would.
func (s *Server) CreateNode(ctx context.Context, n Node) (*corev1.Node, error) {
	obj := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: n.Labels}}
	obj.Spec.PodCIDRs = n.PodCIDRs
	if len(n.PodCIDRs) > 0 {
		obj.Spec.PodCIDR = n.PodCIDRs[0]
	}
	created, err := s.Admin.CoreV1().Nodes().Create(ctx, obj, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("kube: creating node %s: %w", n.Name, err)
	}
	for _, ip := range n.InternalIPs {
		created.Status.Addresses = append(created.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip.String()})
	}
	created.Status.Addresses = append(created.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: n.Name})
	now := metav1.Now()
	if n.NetworkUnavailable {
		created.Status.Conditions = append(created.Status.Conditions, corev1.NodeCondition{
			Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionTrue, Reason: "NoRouteCreated",
			Message: "Node created without a route", LastTransitionTime: now, LastHeartbeatTime: now,
		})
	}
	updated, err := s.Admin.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("kube: setting status of node %s: %w", n.Name, err)
	}
	return updated, nil
}

// NetworkUnavailable returns a node's NetworkUnavailable condition, or nil.
func (s *Server) NetworkUnavailable(ctx context.Context, name string) (*corev1.NodeCondition, error) {
	n, err := s.Admin.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == corev1.NodeNetworkUnavailable {
			return &n.Status.Conditions[i], nil
		}
	}
	return nil, nil
}
