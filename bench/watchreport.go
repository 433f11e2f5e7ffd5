package main

import (
	"fmt"
	"strconv"
	"strings"
)

// renderWatch writes the watcher's table and its targets.
func renderWatch(ws []WatchResult) string {
	if len(ws) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("\n### routepush watch (API as the source, real kube-apiserver)\n\n")
	b.WriteString("A node joins a cluster of N-1 whose routes the watcher keeps, timed from its Node object's create to every table holding its routes (it routes to the N-1, they route to it), as the bench reads the tables (rtnetlink); a leave is its Node object's delete to its routes gone everywhere. The watcher's own figures are its log's `took` (the round) and `event_age` (the informer's event to the round's end). CPU per join is the watcher's (/proc) and every node process's, sshd and what it started (reaped or still running).\n\n")
	b.WriteString("| nodes | first sync (s) | join median (s) | join max (s) | joins (s) | leave median (s) | watcher: round took (s) | watcher: event_age (s) | CPU per join, watcher / nodes (s, median) |\n")
	b.WriteString("| ---: | ---: | ---: | ---: | --- | ---: | --- | --- | --- |\n")
	list := func(xs []float64) string {
		var s []string
		for _, x := range xs {
			s = append(s, strconv.FormatFloat(x, 'f', 2, 64))
		}
		return strings.Join(s, ", ")
	}
	for _, w := range ws {
		errNote := ""
		if w.Err != "" {
			errNote = " (" + strings.SplitN(w.Err, "\n", 2)[0] + ")"
		}
		cpu := ""
		if len(w.WatcherCPU) > 0 {
			cpu = fmt.Sprintf("%.2f / %.2f", median(w.WatcherCPU), median(w.NodesCPU))
		}
		fmt.Fprintf(&b, "| %d | %.2f | %.2f | %.2f | %s | %.2f | %s | %s | %s%s |\n", w.Nodes, w.FirstSync, w.JoinMed, w.JoinMax,
			list(w.Joins), w.LeaveMed, list(w.RoundTook), list(w.EventAge), cpu, errNote)
	}
	b.WriteString("\n#### Targets\n\n")
	for _, w := range ws {
		if w.Nodes != 200 {
			continue
		}
		if len(w.Joins) == 0 {
			b.WriteString("- join converged ≤ 2 s at N = 200: not run\n")
			continue
		}
		fmt.Fprintf(&b, "- join converged ≤ 2 s at N = 200: %s (median %.2f s, max %.2f s over %d joins)\n", passMiss(w.JoinMed <= 2), w.JoinMed, w.JoinMax, len(w.Joins))
	}
	for _, w := range ws {
		i := w.Idle
		if i == nil {
			continue
		}
		note := ""
		if i.Rounds > 0 {
			note = fmt.Sprintf("; %d rounds ran in the window: not idle", i.Rounds)
		}
		fmt.Fprintf(&b, "- idle watcher ≤ 1 %% of a core at N = %d: %s (%.2f %%: %.2f CPU-s in %.0f s, %d SSH connections held%s)\n",
			w.Nodes, passMiss(i.CPUPercent <= 1 && i.Rounds == 0), i.CPUPercent, i.CPUSeconds, i.Window, i.SSHConns, note)
		fmt.Fprintf(&b, "- idle watcher ≤ 64 MB at N = %d: %s (VmRSS %.1f MB; VmHWM %.1f MB, the peak since its start, first sync included; %d threads)\n",
			w.Nodes, passMiss(i.RSSMB <= 64), i.RSSMB, i.HWMMB, i.Threads)
	}
	return b.String()
}

func passMiss(ok bool) string { return map[bool]string{true: "PASS", false: "MISS"}[ok] }
