package remote

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"
)

// Hop is one jump host of a ProxyJump chain, as written: [user@]host[:port].
type Hop struct {
	User string
	Host string
	Port int // 0: from ssh_config, else 22
}

func (h Hop) String() string {
	s := h.Host
	if strings.Contains(s, ":") {
		s = "[" + s + "]"
	}
	if h.User != "" {
		s = h.User + "@" + s
	}
	if h.Port != 0 {
		s += ":" + strconv.Itoa(h.Port)
	}
	return s
}

var (
	hopUserRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9._-]{0,31}$`)
	hopHostRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$`)
)

// ParseJump parses a ProxyJump value: comma-separated hops, each
// [user@]host[:port] or ssh://[user@]host[:port], IPv6 hosts in brackets.
// "" and "none" are no jump host.
func ParseJump(spec string) ([]Hop, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" || strings.EqualFold(spec, "none") {
		return nil, nil
	}
	var hops []Hop
	for _, part := range strings.Split(spec, ",") {
		h, err := parseHop(strings.TrimSpace(part))
		if err != nil {
			return nil, fmt.Errorf("jump host %q: %w", part, err)
		}
		hops = append(hops, h)
	}
	return hops, nil
}

func parseHop(s string) (Hop, error) {
	var h Hop
	s = strings.TrimPrefix(s, "ssh://")
	if at := strings.LastIndex(s, "@"); at >= 0 {
		h.User, s = s[:at], s[at+1:]
		if !hopUserRE.MatchString(h.User) {
			return h, fmt.Errorf("%q is not a valid user name", h.User)
		}
	}
	host, port := s, ""
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.Index(s, "]")
		if end < 0 {
			return h, fmt.Errorf("unclosed [")
		}
		host, port = s[1:end], strings.TrimPrefix(s[end+1:], ":")
		if s[end+1:] != "" && !strings.HasPrefix(s[end+1:], ":") {
			return h, fmt.Errorf("unexpected %q after ]", s[end+1:])
		}
	case strings.Count(s, ":") == 1:
		host, port, _ = strings.Cut(s, ":")
	}
	if _, err := netip.ParseAddr(host); err != nil && !hopHostRE.MatchString(host) {
		return h, fmt.Errorf("%q is neither an IP address nor a host name", host)
	}
	h.Host = host
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return h, fmt.Errorf("port %q is out of range 1-65535", port)
		}
		h.Port = n
	}
	return h, nil
}

// jumpChain is one authenticated connection through a chain of jump hosts,
// shared by every node behind it: one login on each jump host per run, and
// each node a direct-tcpip channel on the last one.
type jumpChain struct {
	clients []*ssh.Client // every hop's client, first hop first
}

// last is the client nodes are dialed through.
func (j *jumpChain) last() *ssh.Client { return j.clients[len(j.clients)-1] }

func (j *jumpChain) close() {
	for i := len(j.clients) - 1; i >= 0; i-- {
		j.clients[i].Close()
	}
}

// jump returns the shared connection for a chain of hops, opening it on
// first use. A chain that failed is not retried in the same run: every node
// behind it reports the same error instead of hammering the jump host.
func (d *Dialer) jump(ctx context.Context, hops []Hop) (*jumpChain, error) {
	return d.jumps.get(fmt.Sprint(hops), func() (*jumpChain, error) {
		// The chain outlives the first node's context: use one of its own,
		// bounded by the connect timeout of each hop.
		ctx := context.WithoutCancel(ctx)
		j := &jumpChain{}
		var via *ssh.Client
		for _, h := range hops {
			ep, err := d.endpoint(ctx, Target{Name: h.Host, User: h.User, Port: h.Port}, true)
			if err != nil {
				j.close()
				return nil, fmt.Errorf("jump host %s: %w", h, err)
			}
			conn, chans, reqs, err := d.handshake(ctx, via, ep, "jump host "+ep.String())
			if err != nil {
				j.close()
				return nil, err
			}
			c := ssh.NewClient(conn, chans, reqs) // Dial, for the next hop
			j.clients = append(j.clients, c)
			via = c
		}
		return j, nil
	})
}

// dialVia opens a TCP connection to addr, directly or through a jump
// chain's last hop.
func dialVia(ctx context.Context, via *ssh.Client, addr string) (net.Conn, error) {
	if via == nil {
		var nd net.Dialer
		return nd.DialContext(ctx, "tcp", addr)
	}
	return via.DialContext(ctx, "tcp", addr)
}

// JumpHosts returns the host name or address of each jump host a target is
// reached through, as --jump and ssh_config resolve them (HostName
// included), so the plan can be checked against them before any
// connection.
func (d *Dialer) JumpHosts(ctx context.Context, t Target) ([]string, error) {
	e, err := d.endpoint(ctx, t, false)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.Name, err)
	}
	hosts := make([]string, 0, len(e.jump))
	for _, h := range e.jump {
		ep, err := d.endpoint(ctx, Target{Name: h.Host, User: h.User, Port: h.Port}, true)
		if err != nil {
			return nil, fmt.Errorf("%s: jump host %s: %w", t.Name, h, err)
		}
		hosts = append(hosts, ep.host)
	}
	return hosts, nil
}
