package watch

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

func TestServe(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.Managed(42)
	m.RoundDone(Round{Reason: "sync", Started: time.Now(), Took: time.Second, Nodes: []NodeResult{{Name: "a", State: Converged}}})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	var ready atomic.Bool
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeOn(ctx, ln, reg, ready.Load) }()

	if code, body := get(t, base+"/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz = %d %q, want 200 ok", code, body)
	}
	if code, _ := get(t, base+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz before the first sync = %d, want 503", code)
	}
	ready.Store(true)
	if code, _ := get(t, base+"/readyz"); code != 200 {
		t.Errorf("/readyz after the first sync = %d, want 200", code)
	}
	code, body := get(t, base+"/metrics")
	if code != 200 {
		t.Errorf("/metrics = %d", code)
	}
	for _, want := range []string{
		"routepush_routes_managed 42",
		`routepush_nodes{state="converged"} 1`,
		`routepush_rounds_total{reason="sync",result="ok"} 1`,
		"# HELP routepush_leader ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}
	for _, p := range []string{"/", "/debug/pprof/", "/metricsx"} {
		if code, _ := get(t, base+p); code != http.StatusNotFound {
			t.Errorf("%s = %d, want 404", p, code)
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve after ctx done: %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return after ctx was done")
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Error("still listening after shutdown")
	}
}

func TestServeAddr(t *testing.T) {
	reg := prometheus.NewRegistry()
	for _, addr := range []string{"nonsense", "127.0.0.1:notaport", "127.0.0.1:99999"} {
		err := Serve(context.Background(), addr, reg, nil)
		if err == nil || !strings.Contains(err.Error(), "metrics address") {
			t.Errorf("Serve(%q) = %v, want a metrics address error", addr, err)
		}
	}

	// A port in use is an error at once.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := Serve(context.Background(), ln.Addr().String(), reg, nil); err == nil {
		t.Errorf("Serve on a port in use: nil error")
	}

	// A bare :port binds loopback only, and Serve returns nil when ctx
	// is done.
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ":"+port, reg, nil) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get("http://127.0.0.1:" + port + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Serve(:%s) not reachable on loopback: %v", port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve after ctx done: %v", err)
	}
}
