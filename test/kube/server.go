// Package kube runs a real Kubernetes API server for routepush's tests:
// kube-apiserver, built from the k8s.io/kubernetes module in
// test/kube-apiserver and cached, over Debian's etcd, both inside a lab's
// bastion namespace on its loopback, with static-token users and RBAC.
package kube

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// The users the server knows, by bearer token. Admin is in system:masters
// and can do anything; the other two have only what configs/rbac.yaml
// grants once bound (see ApplyRBAC).
const (
	AdminToken      = "admin-token-0123456789"
	RoutepushToken  = "routepush-token-0123456789" // user "routepush": both roles
	ReadOnlyToken   = "readonly-token-0123456789"  // user "routepush-readonly": reading nodes only
	RoutepushUser   = "routepush"
	ReadOnlyUser    = "routepush-readonly"
	apiPort         = "6443"
	etcdClientPort  = "2379"
	etcdPeerPort    = "2380"
	readyTimeout    = 2 * time.Minute
	serviceIPRange  = "198.19.255.0/24" // lab space; the tests create no Services
	clusterName     = "lab"
	loopbackAddress = "127.0.0.1"
)

// Options place a server.
type Options struct {
	// Netns is the network namespace both processes run in; their
	// addresses are its loopback.
	Netns string
	// Advertise is the address the server says it has, one of the
	// namespace's own (kube-apiserver refuses loopback).
	Advertise netip.Addr
	// Dial reaches the server's loopback from the test process.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Dir holds certificates, data and logs; default a new temporary one.
	Dir string
	// Binary is the kube-apiserver to run; default Binary().
	Binary string
}

// Server is a running etcd and kube-apiserver.
type Server struct {
	Dir   string
	URL   string // https://127.0.0.1:6443, as seen from the namespace
	CA    []byte // PEM of the CA that signed the serving certificate
	Admin *kubernetes.Clientset
	dial  func(ctx context.Context, network, addr string) (net.Conn, error)
	procs []*exec.Cmd
}

// Start starts etcd and kube-apiserver and waits until the server is ready.
// On error everything started is stopped.
func Start(ctx context.Context, o Options) (_ *Server, err error) {
	if o.Binary == "" {
		if o.Binary, err = Binary(ctx); err != nil {
			return nil, err
		}
	}
	if o.Dir == "" {
		if o.Dir, err = os.MkdirTemp("", "routepush-kube-"); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, err
	}
	s := &Server{Dir: o.Dir, URL: "https://" + net.JoinHostPort(loopbackAddress, apiPort), dial: o.Dial}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	if err := s.writeCredentials(); err != nil {
		return nil, err
	}
	etcdURL := func(port string) string { return "http://" + net.JoinHostPort(loopbackAddress, port) }
	if err := s.start(o.Netns, "etcd", "/usr/bin/etcd",
		"--name", "lab",
		"--data-dir", filepath.Join(o.Dir, "etcd"),
		"--listen-client-urls", etcdURL(etcdClientPort),
		"--advertise-client-urls", etcdURL(etcdClientPort),
		"--listen-peer-urls", etcdURL(etcdPeerPort),
		"--initial-advertise-peer-urls", etcdURL(etcdPeerPort),
		"--initial-cluster", "lab="+etcdURL(etcdPeerPort),
		"--log-level", "warn",
	); err != nil {
		return nil, err
	}
	if err := s.start(o.Netns, "kube-apiserver", o.Binary,
		"--etcd-servers", etcdURL(etcdClientPort),
		"--bind-address", loopbackAddress,
		"--secure-port", apiPort,
		"--advertise-address", o.Advertise.String(),
		"--tls-cert-file", s.path("serving.crt"),
		"--tls-private-key-file", s.path("serving.key"),
		"--client-ca-file", s.path("ca.crt"),
		"--token-auth-file", s.path("tokens.csv"),
		"--authorization-mode", "RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", s.path("sa.key"),
		"--service-account-signing-key-file", s.path("sa.key"),
		"--service-cluster-ip-range", serviceIPRange,
		// Clusters upgraded from before 1.36 still hold node CIDRs that
		// today's strict validation would refuse; the tests store such
		// values to see routepush refuse them.
		"--feature-gates", "StrictIPCIDRValidation=false",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--v", "1",
	); err != nil {
		return nil, err
	}
	admin := s.RESTConfig(AdminToken)
	// Tests create nodes in bursts (20 joins within a second): not
	// client-go's default of 5 requests a second.
	admin.QPS, admin.Burst = 200, 400
	if s.Admin, err = kubernetes.NewForConfig(admin); err != nil {
		return nil, err
	}
	if err := s.waitReady(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Server) path(name string) string { return filepath.Join(s.Dir, name) }

// start runs a program inside the namespace, its output in DIR/NAME.log.
func (s *Server) start(netns, name, bin string, args ...string) error {
	log, err := os.Create(s.path(name + ".log"))
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", netns, bin}, args...)...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("kube: starting %s: %w", name, err)
	}
	s.procs = append(s.procs, cmd)
	go func() { _ = cmd.Wait() }()
	return nil
}

// waitReady polls /readyz, which turns ok once etcd is reached and the
// server's bootstrap (RBAC's default roles among it) is done.
func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	var last error
	for {
		body, err := s.Admin.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil && string(body) == "ok" {
			return nil
		}
		last = err
		for _, p := range s.procs {
			if p.ProcessState != nil {
				return fmt.Errorf("kube: %s exited: %s", p.Args[3], s.logTail(filepath.Base(p.Args[3])))
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kube: apiserver not ready after %s: %v\n%s", readyTimeout, last, s.logTail("kube-apiserver"))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// logTail is the end of a process's log, for errors.
func (s *Server) logTail(name string) string {
	b, _ := os.ReadFile(s.path(name + ".log"))
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// Stop kills both processes. (The lab's teardown kills every process in
// its namespaces as well.)
func (s *Server) Stop() {
	for _, p := range s.procs {
		if p.Process != nil {
			_ = p.Process.Kill()
		}
	}
}

// RESTConfig is a client config for the user with the token, dialing
// through the namespace.
func (s *Server) RESTConfig(token string) *rest.Config {
	return &rest.Config{
		Host:            s.URL,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: s.CA},
		Dial:            s.dial,
		Timeout:         30 * time.Second,
		// The tests store values the API warns about on purpose.
		WarningHandler: rest.NoWarnings{},
	}
}

// WriteKubeconfig writes a kubeconfig for the user with the token, with one
// cluster and one context, both named "lab" (or context, if given).
func (s *Server) WriteKubeconfig(path, token, context string) error {
	if context == "" {
		context = clusterName
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[clusterName] = &clientcmdapi.Cluster{Server: s.URL, CertificateAuthorityData: s.CA}
	cfg.AuthInfos["user"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts[context] = &clientcmdapi.Context{Cluster: clusterName, AuthInfo: "user"}
	cfg.CurrentContext = context
	return clientcmd.WriteToFile(*cfg, path)
}

// writeCredentials makes a CA, the server's certificate for 127.0.0.1,
// the service-account signing key and the token file.
func (s *Server) writeCredentials() error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "routepush test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP(loopbackAddress)},
		DNSNames:     []string{"localhost"},
	}, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	s.CA = pemBlock("CERTIFICATE", caDER)
	files := map[string][]byte{
		"ca.crt":      s.CA,
		"serving.crt": pemBlock("CERTIFICATE", srvDER),
		"tokens.csv": []byte(strings.Join([]string{
			AdminToken + ",admin,admin,system:masters",
			RoutepushToken + "," + RoutepushUser + "," + RoutepushUser,
			ReadOnlyToken + "," + ReadOnlyUser + "," + ReadOnlyUser,
		}, "\n") + "\n"),
	}
	for name, key := range map[string]*ecdsa.PrivateKey{"serving.key": srvKey, "sa.key": saKey} {
		der, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return err
		}
		files[name] = pemBlock("EC PRIVATE KEY", der)
	}
	for name, data := range files {
		if err := os.WriteFile(s.path(name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func pemBlock(typ string, der []byte) []byte {
	var b bytes.Buffer
	_ = pem.Encode(&b, &pem.Block{Type: typ, Bytes: der})
	return b.Bytes()
}
