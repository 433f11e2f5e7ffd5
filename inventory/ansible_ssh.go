package inventory

import (
	"fmt"
	"strings"

	"github.com/google/shlex"

	"github.com/routepush/routepush/internal/proxyjump"
)

// harmlessSSHOptions are ssh -o options an inventory may pass that do not
// change where routepush connects or how it logs in; they are ignored
// with a warning. Keys are lower case, as ssh reads them.
var harmlessSSHOptions = map[string]bool{
	"stricthostkeychecking": true, "userknownhostsfile": true, "globalknownhostsfile": true,
	"controlmaster": true, "controlpath": true, "controlpersist": true,
	"serveraliveinterval": true, "serveralivecountmax": true, "connecttimeout": true,
	"tcpkeepalive": true, "compression": true, "loglevel": true, "forwardagent": true,
	"forwardx11": true, "identitiesonly": true, "gssapiauthentication": true,
	"preferredauthentications": true, "passwordauthentication": true,
	"kbdinteractiveauthentication": true, "pubkeyauthentication": true,
	"hashknownhosts": true, "checkhostip": true, "updatehostkeys": true,
	"visualhostkey": true, "batchmode": true, "requesttty": true,
}

// sshArgs takes the jump hosts out of extra ssh arguments (-J x, -o
// ProxyJump=x). Options that change where or how routepush would log in
// are refused; those that do not are ignored with a warning.
func (r *nodeVars) sshArgs(n *Node, name string) {
	s, ok := r.str(name, "jump")
	if !ok || strings.TrimSpace(s) == "" {
		return
	}
	args, err := shlex.Split(s)
	if err != nil {
		r.bad(name, "jump", "%q: %v", s, err)
		return
	}
	setJump := func(j string) {
		if _, err := proxyjump.Parse(j); err != nil {
			r.bad(name, "jump", "%v", err)
			return
		}
		if n.SSH.Jump != "" && n.SSH.Jump != j {
			r.bad(name, "jump", "jump host %q disagrees with %q; give one", j, n.SSH.Jump)
			return
		}
		n.SSH.Jump = j
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		next := func() (string, bool) {
			if i+1 >= len(args) {
				r.bad(name, "jump", "%s wants a value", a)
				return "", false
			}
			i++
			return args[i], true
		}
		switch {
		case a == "-J":
			if v, ok := next(); ok {
				setJump(v)
			}
		case strings.HasPrefix(a, "-J"):
			setJump(a[2:])
		case a == "-o" || strings.HasPrefix(a, "-o"):
			opt := strings.TrimPrefix(a, "-o")
			if opt == "" {
				v, ok := next()
				if !ok {
					continue
				}
				opt = v
			}
			key, value, found := strings.Cut(opt, "=")
			if !found {
				key, value, _ = strings.Cut(strings.TrimSpace(opt), " ")
			}
			key, value = strings.ToLower(strings.TrimSpace(key)), strings.TrimSpace(value)
			switch {
			case key == "proxyjump":
				setJump(value)
			case harmlessSSHOptions[key]:
				r.warnings = append(r.warnings, fmt.Sprintf("%s: -o %s ignored (routepush's own setting applies)", name, opt))
			default:
				r.bad(name, "jump", "-o %s changes how or where routepush would connect and cannot be honoured here: use ansible_host, ansible_user, ansible_port, ansible_ssh_private_key_file, -J or -o ProxyJump, or ssh_config", opt)
			}
		case a == "-C" || a == "-q" || a == "-T" || a == "-A" || strings.Trim(a, "v") == "-":
			r.warnings = append(r.warnings, fmt.Sprintf("%s: %s ignored", name, a))
		default:
			r.bad(name, "jump", "%q changes how or where routepush would connect and cannot be honoured here: use ansible_host, ansible_user, ansible_port, ansible_ssh_private_key_file, -J or -o ProxyJump, or ssh_config", a)
		}
	}
}
