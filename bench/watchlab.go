package main

// The kube-apiserver's users, the Node objects and known_hosts of the
// watch section.

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/routepush/routepush/test/kube"
	"github.com/routepush/routepush/test/lab"
)

// grantWatch lets the user routepush watch Nodes, as deploy/10-rbac.yaml
// lets the watcher's ServiceAccount: configs/rbac.yaml, the one-shot
// routepush's, grants get and list only, and an informer refused its
// watch falls back to listing again after a growing backoff (seconds to
// tens of seconds), which is what a join would then wait for.
func grantWatch(ctx context.Context, api *kube.Server) error {
	rbac := api.Admin.RbacV1()
	if _, err := rbac.ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "routepush-bench-watch"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"watch"}}},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := rbac.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "routepush-bench-watch"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "routepush-bench-watch"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: kube.RoutepushUser}},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	c, err := kubernetes.NewForConfig(api.RESTConfig(kube.RoutepushToken))
	if err != nil {
		return err
	}
	// The authorizer learns the binding through a watch of its own.
	for deadline := time.Now().Add(30 * time.Second); ; {
		wi, err := c.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{})
		if err == nil {
			wi.Stop()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("RBAC never granted watching nodes: %w", err)
		}
		if err := waitCtx(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// register creates a lab node's Node object, as its kubelet and the
// cluster's IPAM would.
func register(ctx context.Context, api *kube.Server, n *lab.Node) error {
	_, err := api.CreateNode(ctx, kube.Node{Name: n.Name, InternalIPs: []netip.Addr{n.Addr}, PodCIDRs: []string{n.PodCIDR.String()}})
	return err
}

// converged holds when each of nodes routes to every other one's pod
// CIDR via its address (routes to nodes beyond them are not looked at).
func converged(nodes []*lab.Node) func([]map[netip.Prefix]netip.Addr) bool {
	return func(t []map[netip.Prefix]netip.Addr) bool {
		for i := range nodes {
			for j, o := range nodes {
				if i != j && t[i][o.PodCIDR] != o.Addr {
					return false
				}
			}
		}
		return true
	}
}

// departed holds when none of nodes routes to gone's pod CIDR any more.
func departed(nodes []*lab.Node, gone *lab.Node) func([]map[netip.Prefix]netip.Addr) bool {
	return func(t []map[netip.Prefix]netip.Addr) bool {
		for i := range nodes {
			if _, ok := t[i][gone.PodCIDR]; ok {
				return false
			}
		}
		return true
	}
}

// knownByName adds every node's host key under its name to the lab's
// known_hosts, and returns what puts the file back.
func (b *bench) knownByName() (func(), error) {
	path := b.lab.KnownHostsPath()
	orig, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var add strings.Builder
	for _, n := range b.lab.Nodes {
		add.WriteString(lab.KnownHostsLine(n.Name, n.HostKey) + "\n")
	}
	if err := os.WriteFile(path, append(slices.Clone(orig), add.String()...), 0o644); err != nil {
		return nil, err
	}
	return func() { _ = os.WriteFile(path, orig, 0o644) }, nil
}
