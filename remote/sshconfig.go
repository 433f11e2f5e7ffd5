package remote

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kevinburke/ssh_config"

	"github.com/routepush/routepush/internal/homedir"
)

// HostConfig is what OpenSSH's client configuration says about one host,
// with ~ and %-tokens expanded. Zero values mean it says nothing.
type HostConfig struct {
	HostName              string
	User                  string
	Port                  int
	IdentityFiles         []string
	ProxyJump             string // "" or "none": no jump host
	ProxyCommand          string // refused: routepush speaks SSH itself
	KnownHostsFiles       []string
	StrictHostKeyChecking string // yes, ask, accept-new, no, off
	ConnectTimeout        time.Duration
	HashKnownHosts        bool
	// ServerAliveInterval and ServerAliveCountMax: keepalives (0: unset).
	ServerAliveInterval time.Duration
	ServerAliveCountMax int
}

// SSHConfig answers HostConfig questions from the files OpenSSH's ssh would
// read. It uses github.com/kevinburke/ssh_config where that parses the files;
// where it cannot (Match criteria other than host/all, such as the
// "Match final" RHEL and Fedora ship), it asks OpenSSH itself with
// `ssh -G`, once per host, so the answer is exactly what ssh would do.
type SSHConfig struct {
	files  []string             // in OpenSSH's order: user's, then system's
	parsed []*ssh_config.Config // one per file; nil when ssh -G answers
	// Fallback says why ssh -G answers instead of the parser; "" if it does not.
	Fallback string
	explicit string // the -F file, if one was given

	hosts   onceMap[HostConfig]
	sshPath string

	defaultsOnce sync.Once
	defaults     HostConfig // ssh -G's answer with no configuration at all
	defaultsErr  error
}

// LoadSSHConfig reads OpenSSH client configuration: only path when given
// (like ssh -F), else ~/.ssh/config and /etc/ssh/ssh_config where they exist.
// An unparsable file is not an error as long as OpenSSH's ssh is installed
// to resolve hosts with ssh -G.
func LoadSSHConfig(path string) (*SSHConfig, error) {
	c := &SSHConfig{}
	if path != "" {
		path = homedir.Expand(path)
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("ssh config: %w", err)
		}
		c.files, c.explicit = []string{path}, path
	} else {
		for _, p := range []string{homedir.Expand("~/.ssh/config"), "/etc/ssh/ssh_config"} {
			if _, err := os.Stat(p); err == nil {
				c.files = append(c.files, p)
			}
		}
	}
	for _, f := range c.files {
		cfg, err := parseSSHConfig(f)
		if err != nil {
			c.parsed = nil
			sshPath, lookErr := exec.LookPath("ssh")
			if lookErr != nil {
				return nil, fmt.Errorf("ssh config %s (or a file it includes): %v; routepush resolves such files with OpenSSH's `ssh -G`, which is not installed", f, err)
			}
			c.sshPath = sshPath
			c.Fallback = fmt.Sprintf("%s (or a file it includes): %v", f, err)
			return c, nil
		}
		c.parsed = append(c.parsed, cfg)
	}
	return c, nil
}

// parseSSHConfig parses one file with kevinburke/ssh_config. The parser
// panics on some input; that is a parse error here, not a crash.
func parseSSHConfig(path string) (cfg *ssh_config.Config, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	cfg, err = ssh_config.DecodeBytes(b)
	if err != nil {
		return nil, lineError(err)
	}
	return cfg, nil
}

// lineError rewrites the parser's "(12, 1): msg" position into "line 12: msg".
func lineError(err error) error {
	msg := err.Error()
	var line, col int
	if n, _ := fmt.Sscanf(msg, "(%d, %d): ", &line, &col); n == 2 {
		if i := strings.Index(msg, "): "); i >= 0 {
			return fmt.Errorf("line %d: %s", line, strings.TrimPrefix(msg[i+3:], "ssh_config: "))
		}
	}
	return err
}

// Files returns the files consulted, in order.
func (c *SSHConfig) Files() []string { return c.files }

// Host resolves the configuration for a host alias (the name as one would
// type it after ssh). The answer is computed once per alias.
func (c *SSHConfig) Host(ctx context.Context, alias string) (HostConfig, error) {
	if c == nil {
		return HostConfig{}, nil
	}
	return c.hosts.get(alias, func() (HostConfig, error) {
		if c.parsed != nil || c.sshPath == "" {
			return c.fromParsed(alias)
		}
		return c.fromSSH(ctx, alias)
	})
}

// fromParsed answers from the parsed files: the first value wins, as in
// OpenSSH, except IdentityFile, of which every one counts.
func (c *SSHConfig) fromParsed(alias string) (HostConfig, error) {
	get := func(key string) string {
		for _, cfg := range c.parsed {
			if v, _ := cfg.Get(alias, key); v != "" {
				return v
			}
		}
		return ""
	}
	kv := map[string][]string{}
	for _, key := range []string{"hostname", "user", "port", "proxyjump", "proxycommand", "userknownhostsfile",
		"stricthostkeychecking", "connecttimeout", "hashknownhosts", "serveraliveinterval", "serveralivecountmax"} {
		if v := get(key); v != "" {
			kv[key] = []string{v}
		}
	}
	for _, cfg := range c.parsed {
		all, _ := cfg.GetAll(alias, "identityfile")
		kv["identityfile"] = append(kv["identityfile"], all...)
	}
	return c.hostConfig(alias, kv, true)
}

// hostConfig turns keyword values into a HostConfig. With expand, ~ and
// %-tokens are expanded here (ssh -G has done it, except for IdentityFile).
func (c *SSHConfig) hostConfig(alias string, kv map[string][]string, expand bool) (HostConfig, error) {
	var hc HostConfig
	first := func(k string) string {
		if v := kv[k]; len(v) > 0 {
			return strings.TrimSpace(v[0])
		}
		return ""
	}
	hc.HostName = first("hostname")
	if expand && hc.HostName != "" {
		hc.HostName = expandTokens(hc.HostName, tokens{host: alias, alias: alias})
	}
	hc.User = first("user")
	if p := first("port"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return hc, fmt.Errorf("ssh config for %s: Port %q is not a port number", alias, p)
		}
		hc.Port = n
	}
	host := alias
	if hc.HostName != "" {
		host = hc.HostName
	}
	tok := tokens{host: host, alias: alias, port: hc.Port, user: hc.User}
	for _, f := range kv["identityfile"] {
		if strings.EqualFold(f, "none") {
			continue
		}
		// ssh -G prints IdentityFile unexpanded too: ssh expands it on use.
		hc.IdentityFiles = append(hc.IdentityFiles, expandTokens(f, tok))
	}
	hc.ProxyJump = first("proxyjump")
	if strings.EqualFold(hc.ProxyJump, "none") {
		hc.ProxyJump = ""
	}
	hc.ProxyCommand = first("proxycommand")
	if strings.EqualFold(hc.ProxyCommand, "none") {
		hc.ProxyCommand = ""
	}
	for _, v := range kv["userknownhostsfile"] {
		for _, f := range strings.Fields(v) {
			if expand {
				f = expandTokens(f, tok)
			}
			hc.KnownHostsFiles = append(hc.KnownHostsFiles, homedir.Expand(f))
		}
	}
	hc.StrictHostKeyChecking = strings.ToLower(first("stricthostkeychecking"))
	hc.HashKnownHosts = strings.EqualFold(first("hashknownhosts"), "yes")
	err := hc.setNumbers(alias, first)
	return hc, err
}

// setNumbers reads the keywords whose values are counts or seconds; an
// absent one (or ConnectTimeout none) leaves its field 0.
func (hc *HostConfig) setNumbers(alias string, first func(string) string) error {
	number := func(key, name, what string) (int, error) {
		t := first(key)
		if t == "" || (key == "connecttimeout" && t == "none") {
			return 0, nil
		}
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("ssh config for %s: %s %q is not %s", alias, name, t, what)
		}
		return n, nil
	}
	n, err := number("connecttimeout", "ConnectTimeout", "a number of seconds")
	if err != nil {
		return err
	}
	hc.ConnectTimeout = time.Duration(n) * time.Second
	if n, err = number("serveraliveinterval", "ServerAliveInterval", "a number of seconds"); err != nil {
		return err
	}
	hc.ServerAliveInterval = time.Duration(n) * time.Second
	if n, err = number("serveralivecountmax", "ServerAliveCountMax", "a number"); err != nil {
		return err
	}
	hc.ServerAliveCountMax = n
	return nil
}

type tokens struct {
	host, alias, user string
	port              int
}

// expandTokens expands the ssh_config tokens routepush's keywords may use
// (%h %n %p %r %u %d %i %%) and a leading ~, as OpenSSH does. Unknown
// tokens are left as written.
func expandTokens(s string, t tokens) string {
	if !strings.Contains(s, "%") {
		return homedir.Expand(s)
	}
	local, _ := user.Current()
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case '%':
			b.WriteByte('%')
		case 'h':
			b.WriteString(t.host)
		case 'n':
			b.WriteString(t.alias)
		case 'p':
			port := t.port
			if port == 0 {
				port = 22
			}
			b.WriteString(strconv.Itoa(port))
		case 'r':
			r := t.user
			if r == "" && local != nil {
				r = local.Username
			}
			b.WriteString(r)
		case 'u':
			if local != nil {
				b.WriteString(local.Username)
			}
		case 'd':
			home, _ := os.UserHomeDir()
			b.WriteString(home)
		case 'i':
			b.WriteString(strconv.Itoa(os.Getuid()))
		default:
			b.WriteByte('%')
			b.WriteByte(s[i])
		}
	}
	return homedir.Expand(b.String())
}

// errProxyCommand refuses a keyword routepush cannot honour.
var errProxyCommand = errors.New("ProxyCommand is not supported; use ProxyJump (routepush connects through jump hosts itself)")
