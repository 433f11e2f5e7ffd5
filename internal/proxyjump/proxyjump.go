// Package proxyjump is the syntax of OpenSSH's ProxyJump (and routepush's
// --jump and an inventory's jump field): a chain of jump hosts, each
// [user@]host[:port]. It only parses and checks the text; connecting
// through the hops is package remote's job.
//
// It is a leaf: it imports no other routepush package, so that inventory
// can check jump hosts without importing remote (and with it SSH and SFTP).
package proxyjump

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// Hop is one jump host of a ProxyJump chain, as written: [user@]host[:port].
type Hop struct {
	User string
	Host string
	Port int // 0: from ssh_config, else 22
}

// String writes the hop back as [user@]host[:port], an IPv6 host in
// brackets.
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
	// hostRE accepts Kubernetes node names and the host names people put
	// in inventories, and nothing a shell or ssh would read as syntax.
	hostRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$`)
	// userRE is what useradd accepts, less the odd corners.
	userRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9._-]{0,31}$`)
	// zoneRE is the zone of a link-local address (fe80::1%eth0): an
	// interface name. netip takes any text after the '%', which would
	// let "fe80::1%$(reboot)" through as an IP address.
	zoneRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,14}$`)
)

// ValidHost reports whether s is a host (or node) name routepush accepts:
// letters, digits, '.', '_' and '-', starting and ending with a letter or
// digit, at most 253 bytes.
func ValidHost(s string) bool { return hostRE.MatchString(s) }

// ValidAddress reports whether s is an address routepush connects to: an
// IP address (with a zone, as fe80::1%eth0, only when the zone is an
// interface name) or a ValidHost.
func ValidAddress(s string) bool {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Zone() == "" || zoneRE.MatchString(a.Zone())
	}
	return hostRE.MatchString(s)
}

// ValidUser reports whether s is a login name routepush accepts.
func ValidUser(s string) bool { return userRE.MatchString(s) }

// Parse parses a ProxyJump value: comma-separated hops, each
// [user@]host[:port] or ssh://[user@]host[:port], IPv6 hosts in brackets.
// "" and "none" are no jump host.
func Parse(spec string) ([]Hop, error) {
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
		if !userRE.MatchString(h.User) {
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
	if !ValidAddress(host) {
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
