package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/routepush/routepush/test/kube"
)

// WatchResult is `routepush watch` on one lab size (issue 17): a node
// joining a cluster of N-1 and leaving it again, timed from the Node
// object's create (or delete) to every table holding (or no longer
// holding) its routes, as the bench reads the tables; the watcher's own
// figures from its log; and, at the largest size, the watcher idle.
type WatchResult struct {
	Nodes     int       `json:"nodes"`
	FirstSync float64   `json:"first_sync_s"` // watcher start to the N-1 nodes converged
	Joins     []float64 `json:"join_s"`
	JoinMed   float64   `json:"join_median_s"`
	JoinMax   float64   `json:"join_max_s"`
	Leaves    []float64 `json:"leave_s"`
	LeaveMed  float64   `json:"leave_median_s"`
	// The watcher's log: each join's event round (took: the round,
	// event_age: the informer's event to the round's end).
	RoundTook []float64 `json:"join_round_took_s"`
	EventAge  []float64 `json:"join_event_age_s"`
	// CPU time a join cost the watcher and the nodes (sshd and all it
	// starts), from the create to the round's end.
	WatcherCPU []float64   `json:"join_watcher_cpu_s"`
	NodesCPU   []float64   `json:"join_nodes_cpu_s"`
	Idle       *IdleResult `json:"idle,omitempty"`
	Err        string      `json:"error,omitempty"`
}

// IdleResult is the watcher between events, converged, at default
// --resync (no resync falls in the window).
type IdleResult struct {
	Window     float64 `json:"window_s"`
	CPUSeconds float64 `json:"cpu_s"`
	CPUPercent float64 `json:"cpu_percent_of_a_core"`
	RSSMB      float64 `json:"rss_mb"` // VmRSS at the window's end
	HWMMB      float64 `json:"hwm_mb"` // VmHWM: the peak since the start, first sync included
	SSHConns   int     `json:"ssh_connections"`
	Threads    int     `json:"threads"`
	Rounds     int     `json:"rounds_in_window"`
}

// watchOptions are the watch section's settings.
type watchOptions struct {
	sizes map[int]bool  // lab sizes the section runs at
	joins int           // joins per size (each but the last followed by a leave)
	idle  time.Duration // the idle window, at the largest size
	idleN int
	args  []string // more watcher arguments
	// scaleFrom is the lab size from which the scale sequence (scale.go)
	// runs instead of the contenders and the watcher.
	scaleFrom int
}

// watch measures routepush watch on the bench's lab. The lab's routes are
// flushed first: the watcher's first sync starts from empty tables.
func (b *bench) watch(ctx context.Context, o watchOptions) (r WatchResult, err error) {
	n := len(b.lab.Nodes)
	r.Nodes = n
	bin, err := kube.Binary(ctx)
	if err != nil {
		return r, err
	}
	api, err := kube.Start(ctx, kube.Options{Netns: b.lab.Bastion, Advertise: b.lab.BastionAddr, Dial: b.lab.DialBastion,
		Dir: filepath.Join(b.lab.Dir, "kube"), Binary: bin})
	if err != nil {
		return r, err
	}
	defer api.Stop()
	if err := api.ApplyRBAC(ctx, "configs/rbac.yaml"); err != nil {
		return r, err
	}
	if err := grantWatch(ctx, api); err != nil {
		return r, err
	}
	kubeconfig := filepath.Join(b.lab.Dir, "kubeconfig")
	if err := api.WriteKubeconfig(kubeconfig, kube.RoutepushToken, ""); err != nil {
		return r, err
	}
	// A node's address is the Node object's word: the operator vouches
	// for it with the node's host key under its name.
	restore, err := b.knownByName()
	if err != nil {
		return r, err
	}
	defer restore()
	if err := b.flush(ctx); err != nil {
		return r, err
	}
	joiner, members := b.lab.Nodes[n-1], b.lab.Nodes[:n-1]
	for _, m := range members {
		if err := register(ctx, api, m); err != nil {
			return r, err
		}
	}
	mon, err := monitorRoutes(b.lab.Nodes)
	if err != nil {
		return r, err
	}
	defer mon.close()

	start := time.Now()
	w, err := b.startWatcher(filepath.Join(b.out, fmt.Sprintf("watch-%d.log", n)),
		append([]string{"--kubeconfig", kubeconfig, "--concurrency", strconv.Itoa(b.concurrency), "-v"}, o.args...)...)
	if err != nil {
		return r, err
	}
	defer func() {
		// SIGTERM must end the watcher, with exit 0.
		if stopErr := w.stop(); stopErr != nil && err == nil {
			err = stopErr
		}
	}()
	at, err := mon.wait(start, 5*time.Minute, converged(members))
	if err != nil {
		return r, fmt.Errorf("first sync: %w", err)
	}
	r.FirstSync = round(at.Sub(start).Seconds())
	if _, err := w.waitRound(start, "sync", time.Minute); err != nil {
		return r, err
	}
	fmt.Fprintf(os.Stderr, "   watch    first sync of %d nodes: %.2fs\n", n-1, r.FirstSync)

	all := b.lab.Nodes
	for i := range o.joins {
		if i > 0 {
			// The previous join leaves: its Node object goes, then its
			// routes (as a rebuilt node would have none).
			w.note("deleting Node %s", joiner.Name)
			t0 := time.Now()
			if err := api.Admin.CoreV1().Nodes().Delete(ctx, joiner.Name, metav1.DeleteOptions{}); err != nil {
				return r, err
			}
			at, err := mon.wait(t0, time.Minute, departed(members, joiner))
			if err != nil {
				return r, fmt.Errorf("%s leaving: %w", joiner.Name, err)
			}
			r.Leaves = append(r.Leaves, round(at.Sub(t0).Seconds()))
			w.note("%s's routes gone from every table %.3fs after the delete", joiner.Name, r.Leaves[i-1])
			if _, err := w.waitRound(t0, "event", time.Minute); err != nil {
				return r, err
			}
			if out, err := exec.CommandContext(ctx, "ip", "-n", joiner.NS, "-4", "route", "flush", "proto", "114").CombinedOutput(); err != nil {
				return r, fmt.Errorf("%s: %v: %s", joiner.Name, err, out)
			}
			if _, err := mon.wait(time.Now(), time.Minute, func(t []map[netip.Prefix]netip.Addr) bool { return len(t[n-1]) == 0 }); err != nil {
				return r, err
			}
		}
		cpu0, err := sampleProc(w.cmd.Process.Pid)
		if err != nil {
			return r, err
		}
		nodes0, err := nodesCPU(all)
		if err != nil {
			return r, err
		}
		w.note("creating Node %s", joiner.Name)
		t0 := time.Now()
		if err := register(ctx, api, joiner); err != nil {
			return r, err
		}
		at, err := mon.wait(t0, time.Minute, converged(all))
		if err != nil {
			return r, fmt.Errorf("%s joining: %w", joiner.Name, err)
		}
		r.Joins = append(r.Joins, round(at.Sub(t0).Seconds()))
		w.note("%s's routes in every table %.3fs after the create", joiner.Name, r.Joins[i])
		line, err := w.waitRound(t0, "event", time.Minute)
		if err != nil {
			return r, err
		}
		r.RoundTook = append(r.RoundTook, round(line.seconds("took")))
		r.EventAge = append(r.EventAge, round(line.seconds("event_age")))
		cpu1, err := sampleProc(w.cmd.Process.Pid)
		if err != nil {
			return r, err
		}
		nodes1, err := nodesCPU(all)
		if err != nil {
			return r, err
		}
		r.WatcherCPU = append(r.WatcherCPU, round((cpu1.cpu - cpu0.cpu).Seconds()))
		r.NodesCPU = append(r.NodesCPU, round((nodes1 - nodes0).Seconds()))
		fmt.Fprintf(os.Stderr, "   watch    join %d: %.2fs (round took %s, event_age %s; CPU: watcher %.2fs, nodes %.2fs)\n",
			i+1, r.Joins[i], line.fields["took"], line.fields["event_age"], r.WatcherCPU[i], r.NodesCPU[i])
	}
	r.JoinMed, r.JoinMax = median(r.Joins), slices.Max(r.Joins)
	if len(r.Leaves) > 0 {
		r.LeaveMed = median(r.Leaves)
	}
	if found, err := b.countRoutes(ctx); err != nil || found != n*(n-1) {
		return r, fmt.Errorf("after the joins the tables hold %d of %d routes (%v)", found, n*(n-1), err)
	}
	if n == o.idleN && o.idle > 0 {
		idle, err := measureIdle(ctx, w, o.idle)
		if err != nil {
			return r, err
		}
		r.Idle = idle
		fmt.Fprintf(os.Stderr, "   watch    idle %s: %.2f%% of a core, RSS %.1f MB (peak %.1f MB), %d SSH connections\n",
			o.idle, idle.CPUPercent, idle.RSSMB, idle.HWMMB, idle.SSHConns)
	}
	return r, nil
}

// measureIdle samples the converged watcher's CPU time over window, once
// its last round has settled, and its memory at the end.
func measureIdle(ctx context.Context, w *watcherProc, window time.Duration) (*IdleResult, error) {
	if err := waitCtx(ctx, 2*time.Second); err != nil {
		return nil, err
	}
	pid := w.cmd.Process.Pid
	a, err := sampleProc(pid)
	if err != nil {
		return nil, err
	}
	if err := waitCtx(ctx, window); err != nil {
		return nil, err
	}
	z, err := sampleProc(pid)
	if err != nil {
		return nil, err
	}
	conns, err := sshConnections(pid)
	if err != nil {
		return nil, err
	}
	wall := z.at.Sub(a.at).Seconds()
	cpu := (z.cpu - a.cpu).Seconds()
	return &IdleResult{Window: round(wall), CPUSeconds: round(cpu), CPUPercent: round(100 * cpu / wall),
		RSSMB: round(float64(z.rss) / 1024), HWMMB: round(float64(z.hwm) / 1024), SSHConns: conns,
		Threads: z.threads, Rounds: len(w.roundsSince(a.at))}, nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
