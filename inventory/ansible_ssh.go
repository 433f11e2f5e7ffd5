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

// sshOptionsWithValue are the letters of ssh's options that take the
// next argument as their value (ssh(1)).
const sshOptionsWithValue = "BbcDEeFIiJLlmOopQRSWw"

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
		// Not the text itself: it may hold a password (sshpass -p).
		r.bad(name, "jump", "does not split into arguments as a shell would: %v", err)
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
			written, value, found := strings.Cut(opt, "=")
			if !found {
				written, value, _ = strings.Cut(strings.TrimSpace(opt), " ")
			}
			written = strings.TrimSpace(written)
			key := strings.ToLower(written)
			value = strings.TrimSpace(value)
			// Messages name the option, never its value: a refused
			// ProxyCommand may carry a password (sshpass -p ...).
			switch {
			case key == "proxyjump":
				setJump(value)
			case harmlessSSHOptions[key]:
				r.warnings = append(r.warnings, fmt.Sprintf("%s: -o %q ignored (routepush's own setting applies)", name, written))
			default:
				r.bad(name, "jump", "-o %q changes how or where routepush would connect and cannot be honoured here (its value is not shown): use ansible_host, ansible_user, ansible_port, ansible_ssh_private_key_file, -J or -o ProxyJump, or ssh_config", written)
			}
		case a == "-C" || a == "-q" || a == "-T" || a == "-A" || strings.Trim(a, "v") == "-":
			r.warnings = append(r.warnings, fmt.Sprintf("%s: %s ignored", name, a))
		default:
			// The option letter only (-i, -F, -p): what follows it, or
			// a word that is no option at all, may be a secret.
			what := "an argument that is no ssh option"
			if len(a) >= 2 && a[0] == '-' {
				what = fmt.Sprintf("%q", a[:2])
				if len(a) == 2 && strings.ContainsRune(sshOptionsWithValue, rune(a[1])) {
					i++ // its value is part of the refused option
				}
			}
			r.bad(name, "jump", "%s changes how or where routepush would connect and cannot be honoured here (its value is not shown): use ansible_host, ansible_user, ansible_port, ansible_ssh_private_key_file, -J or -o ProxyJump, or ssh_config", what)
		}
	}
}
