package watch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Timeouts of the metrics server: a scrape is small and local.
const (
	serveReadHeaderTimeout = 5 * time.Second
	serveReadTimeout       = 10 * time.Second
	serveWriteTimeout      = 30 * time.Second
	serveIdleTimeout       = 60 * time.Second
	serveShutdownTimeout   = 5 * time.Second
	scrapeTimeout          = 20 * time.Second
)

// Serve serves, on addr (--metrics-addr), until ctx is done:
//
//	/metrics  what reg gathers, in the Prometheus exposition formats
//	/healthz  200 "ok" while the process runs (liveness)
//	/readyz   200 "ok" when ready() is true (the engine's first sync is
//	          done), else 503 (readiness)
//
// and nothing else (no pprof, no index). addr is host:port; a bare ":port"
// binds loopback (127.0.0.1) only, so the metrics are not exposed beyond
// the host unless an address says so (in a pod, "0.0.0.0:9090" or the
// pod's IP). A bad address or a port in use is returned at once; when ctx
// is done, Serve shuts the server down (letting scrapes in flight end,
// for up to 5 s) and returns nil.
func Serve(ctx context.Context, addr string, reg prometheus.Gatherer, ready func() bool) error {
	ln, err := Listen(ctx, addr)
	if err != nil {
		return err
	}
	return ServeOn(ctx, ln, reg, ready)
}

// Listen is Serve's listening half, for a command that must know the
// address is usable before it starts anything else: addr as Serve takes
// it, a bare ":port" on 127.0.0.1 only.
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("metrics address %q: want host:port: %w", addr, err)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", net.JoinHostPort(host, port))
	if err != nil {
		return nil, fmt.Errorf("metrics address %q: %w", addr, err)
	}
	return ln, nil
}

// ServeOn is Serve on a listener from Listen, which it closes.
func ServeOn(ctx context.Context, ln net.Listener, reg prometheus.Gatherer, ready func() bool) error {
	srv := &http.Server{
		Handler:           handler(reg, ready),
		ReadHeaderTimeout: serveReadHeaderTimeout,
		ReadTimeout:       serveReadTimeout,
		WriteTimeout:      serveWriteTimeout,
		IdleTimeout:       serveIdleTimeout,
		MaxHeaderBytes:    16 << 10,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		// Serve failed before ctx was done.
		return fmt.Errorf("metrics server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), serveShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		srv.Close()
		return fmt.Errorf("metrics server shutdown: %w", err)
	}
	return nil
}

func handler(reg prometheus.Gatherer, ready func() bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		MaxRequestsInFlight: 4,
		Timeout:             scrapeTimeout,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		text(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ready != nil && ready() {
			text(w, http.StatusOK, "ok")
			return
		}
		text(w, http.StatusServiceUnavailable, "not ready: first sync not done")
	})
	return mux
}

func text(w http.ResponseWriter, code int, s string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	fmt.Fprintln(w, s)
}
