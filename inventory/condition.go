package inventory

import (
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
)

// The NetworkUnavailable condition as Kubernetes' route controller
// (k8s.io/cloud-provider, controllers/route) sets it: False once a node's
// routes exist, True when they could not be created. Clusters whose nodes
// start with NetworkUnavailable=True (set by a cloud provider or the
// installer) schedule no pods there until it is False.
const (
	ReasonRouteCreated        = "RouteCreated"
	MessageNetworkAvailable   = "routepush created the routes to and from this node"
	ReasonNoRouteCreated      = "NoRouteCreated"
	MessageNetworkUnavailable = "routepush failed to converge the routes on this node (see its RoutesFailed events)"
)

// MarkNetworkAvailable sets a node's NetworkUnavailable condition to False,
// reason RouteCreated, through the status subresource. It writes nothing
// when the condition already says so, and reports whether it wrote. The
// patch carries the resourceVersion it was decided on, so a node changed
// in between is read and decided again rather than overwritten. The first
// decision uses the node as Nodes (or TableOf) last saw it, or as this
// Cluster last wrote it: one request per node, not two.
func (c *Cluster) MarkNetworkAvailable(ctx context.Context, name string) (changed bool, err error) {
	return c.setNetworkCondition(ctx, name, corev1.ConditionFalse, ReasonRouteCreated, MessageNetworkAvailable)
}

// MarkNetworkUnavailable sets a node's NetworkUnavailable condition to
// True, reason NoRouteCreated, as the route controller does for a node
// whose routes it could not create; otherwise as MarkNetworkAvailable.
func (c *Cluster) MarkNetworkUnavailable(ctx context.Context, name string) (changed bool, err error) {
	return c.setNetworkCondition(ctx, name, corev1.ConditionTrue, ReasonNoRouteCreated, MessageNetworkUnavailable)
}

// setNetworkCondition writes the NetworkUnavailable condition unless it
// already has this status and reason (the route controller's test: the
// message alone never causes a write).
func (c *Cluster) setNetworkCondition(ctx context.Context, name string, status corev1.ConditionStatus, reason, message string) (changed bool, err error) {
	nodes := c.Client.CoreV1().Nodes()
	known, cached := c.lastSeen(name)
	err = retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		if !cached {
			n, err := nodes.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			known = listedNode{resourceVersion: n.ResourceVersion, networkCond: networkCondition(n)}
		}
		cached = false // after a conflict, decide again on what the API has now
		now := metav1.Now()
		cond := corev1.NodeCondition{
			Type:               corev1.NodeNetworkUnavailable,
			Status:             status,
			Reason:             reason,
			Message:            message,
			LastTransitionTime: now,
			LastHeartbeatTime:  now,
		}
		if old := known.networkCond; old != nil && old.Status == cond.Status {
			if old.Reason == cond.Reason {
				changed = false
				return nil
			}
			cond.LastTransitionTime = old.LastTransitionTime
		}
		// Conditions merge by type in a strategic merge patch: the
		// node's other conditions, the kubelet's, are left alone.
		patch, err := json.Marshal(map[string]any{
			"metadata": map[string]any{"resourceVersion": known.resourceVersion},
			"status":   map[string]any{"conditions": []corev1.NodeCondition{cond}},
		})
		if err != nil {
			return err
		}
		n, err := nodes.Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
		if err != nil {
			return err
		}
		c.seen(n)
		changed = true
		return nil
	})
	if err != nil {
		return false, c.apiError(fmt.Sprintf("node %q: setting NetworkUnavailable=%s", name, status), err)
	}
	return changed, nil
}

// networkCondition returns a copy of the node's NetworkUnavailable
// condition, or nil.
func networkCondition(n *corev1.Node) *corev1.NodeCondition {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeNetworkUnavailable {
			return &c
		}
	}
	return nil
}
