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
// (k8s.io/cloud-provider, controllers/route) sets it once a node's routes
// exist. Clusters whose nodes start with NetworkUnavailable=True (set by a
// cloud provider or the installer) schedule no pods there until it is False.
const (
	ReasonRouteCreated      = "RouteCreated"
	MessageNetworkAvailable = "routepush created the routes to and from this node"
)

// MarkNetworkAvailable sets a node's NetworkUnavailable condition to False,
// reason RouteCreated, through the status subresource. It writes nothing
// when the condition already says so, and reports whether it wrote. The
// patch carries the resourceVersion it was decided on, so a node changed
// in between is read and decided again rather than overwritten. The first
// decision uses the node as Nodes listed it: one request per node, not two.
func (c *Cluster) MarkNetworkAvailable(ctx context.Context, name string) (changed bool, err error) {
	nodes := c.Client.CoreV1().Nodes()
	known, fresh := c.listed[name], false
	if known.resourceVersion == "" {
		fresh = true // not listed: read it first
	}
	err = retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		if fresh {
			n, err := nodes.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			known = listedNode{resourceVersion: n.ResourceVersion, networkCond: networkCondition(n)}
		}
		fresh = true // after a conflict, decide again on what the API has now
		now := metav1.Now()
		cond := corev1.NodeCondition{
			Type:               corev1.NodeNetworkUnavailable,
			Status:             corev1.ConditionFalse,
			Reason:             ReasonRouteCreated,
			Message:            MessageNetworkAvailable,
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
		if _, err := nodes.Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status"); err != nil {
			return err
		}
		changed = true
		return nil
	})
	if err != nil {
		return false, c.apiError(fmt.Sprintf("node %q: setting NetworkUnavailable=False", name), err)
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
