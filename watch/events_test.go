package watch

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sort"
	"strings"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func listEvents(t *testing.T, client *fake.Clientset) []eventsv1.Event {
	t.Helper()
	l, err := client.EventsV1().Events("").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(l.Items, func(i, j int) bool {
		a, b := l.Items[i], l.Items[j]
		if a.Regarding.Name != b.Regarding.Name {
			return a.Regarding.Name < b.Regarding.Name
		}
		return a.Reason < b.Reason
	})
	return l.Items
}

func keys(evs []eventsv1.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Regarding.Name+"/"+e.Reason+"/"+e.Type)
	}
	return out
}

func TestEvents(t *testing.T) {
	client := fake.NewClientset()
	e, stop := NewEvents(client, slog.New(slog.NewTextHandler(io.Discard, nil)))
	var _ Observer = e

	long := "ssh: \x1b[31mred\x1b[0m " + strings.Repeat("é", 2000)
	e.Leading(true)
	e.RoundDone(Round{Reason: "sync", Nodes: []NodeResult{
		{Name: "a", State: Converged, Added: 2},
		{Name: "b", State: Converged}, // first seen: converged
		{Name: "c", State: Failed, Err: errors.New(long)},
		{Name: "d", State: Pending},
	}})
	e.Managed(4)
	stop()
	stop() // idempotent
	e.RoundDone(Round{Reason: "event", Nodes: []NodeResult{{Name: "z", State: Converged, Added: 1}}})

	evs := listEvents(t, client)
	got := strings.Join(keys(evs), " ")
	want := "a/RoutesConverged/Normal b/RoutesConverged/Normal c/RoutesFailed/Warning"
	if got != want {
		t.Fatalf("events = %s, want %s", got, want)
	}
	for _, ev := range evs {
		if ev.Regarding.Kind != "Node" || string(ev.Regarding.UID) != ev.Regarding.Name || ev.Namespace != "default" {
			t.Errorf("event %s regards %+v in %q", ev.Name, ev.Regarding, ev.Namespace)
		}
		if ev.ReportingController != "routepush" || ev.Action == "" || ev.EventTime.IsZero() {
			t.Errorf("event %s: controller %q action %q time %v", ev.Name, ev.ReportingController, ev.Action, ev.EventTime)
		}
		if len(ev.Note) >= 1024 {
			t.Errorf("event %s: note of %d bytes, over the API's limit", ev.Name, len(ev.Note))
		}
		if strings.ContainsRune(ev.Note, '\x1b') {
			t.Errorf("event %s: note not sanitised: %q", ev.Name, ev.Note)
		}
	}
	if n := evs[2].Note; !strings.Contains(n, `\x1b[31mred`) || !strings.HasSuffix(n, "(truncated)") || !strings.HasPrefix(n, "failed: ssh:") {
		t.Errorf("failed note = %q", n)
	}
}

func TestEventsNoFlood(t *testing.T) {
	client := fake.NewClientset()
	e, stop := NewEvents(client, slog.New(slog.NewTextHandler(io.Discard, nil)))
	errDial := errors.New("dial tcp: i/o timeout")
	e.RoundDone(Round{Reason: "sync", Nodes: []NodeResult{
		{Name: "a", State: Converged, Added: 2},
		{Name: "b", State: Converged, Added: 2},
		{Name: "c", State: Unreachable, Err: errDial},
		{Name: "d", State: Converged, Added: 1},
	}})
	// Nothing changed: no Events.
	for i := 0; i < 5; i++ {
		e.RoundDone(Round{Reason: "resync", Nodes: []NodeResult{
			{Name: "a", State: Converged},
			{Name: "b", State: Converged},
			{Name: "d", State: Converged},
		}})
		e.RoundDone(Round{Reason: "retry", Nodes: []NodeResult{{Name: "c", State: Unreachable, Err: errDial}}})
	}
	// b gets one route (a node joined), d drifted, c is back.
	e.RoundDone(Round{Reason: "event", EventAge: time.Second, Nodes: []NodeResult{{Name: "b", State: Converged, Added: 1}}})
	e.RoundDone(Round{Reason: "resync", Nodes: []NodeResult{
		{Name: "a", State: Converged},
		{Name: "d", State: Converged, Added: 1, Repaired: true},
	}})
	e.RoundDone(Round{Reason: "retry", Nodes: []NodeResult{{Name: "c", State: Converged, Added: 3}}})
	// a deleted and re-created: seen anew.
	e.Forget("a")
	e.RoundDone(Round{Reason: "event", Nodes: []NodeResult{{Name: "a", State: Converged}}})
	stop()

	var got []string
	for _, ev := range listEvents(t, client) {
		n := 1
		if ev.Series != nil {
			n = int(ev.Series.Count)
		}
		for i := 0; i < n; i++ {
			got = append(got, ev.Regarding.Name+"/"+ev.Reason)
		}
	}
	want := []string{
		"a/RoutesConverged", "a/RoutesConverged",
		"b/RoutesConverged", "b/RoutesConverged",
		"c/RoutesConverged", "c/RoutesFailed",
		"d/RoutesConverged", "d/RoutesRepaired",
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("events:\n got %v\nwant %v", got, want)
	}
	for _, ev := range listEvents(t, client) {
		if ev.Regarding.Name == "d" && ev.Reason == ReasonRepaired && !strings.Contains(ev.Note, "1 added") {
			t.Errorf("repaired note = %q", ev.Note)
		}
	}
}

func TestNote(t *testing.T) {
	if got := note("plain"); got != "plain" {
		t.Errorf("note(plain) = %q", got)
	}
	s := note(strings.Repeat("日本", 1000))
	if len(s) > maxNote || !strings.HasSuffix(s, "(truncated)") || !strings.HasPrefix(s, "日本") {
		t.Errorf("note of long text: %d bytes, %q…", len(s), s[:20])
	}
	if !strings.HasPrefix(strings.TrimSuffix(s, " …(truncated)"), "日") || strings.ContainsRune(s, '\uFFFD') {
		t.Errorf("note cut inside a rune")
	}
}
