package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/routepush/routepush/test/lab"
)

// watcherProc is `routepush watch` running in the lab's bastion, its log
// read as it comes.
type watcherProc struct {
	cmd    *exec.Cmd
	exited chan struct{}
	log    *os.File

	mu     sync.Mutex
	rounds []logLine // "round done" lines, in order
	tail   []string  // the last lines, for errors
	seen   chan struct{}
}

// logLine is one slog text line: when the bench read it and its fields.
type logLine struct {
	at     time.Time
	fields map[string]string
}

// startWatcher starts routepush watch with args (ip netns exec runs it
// in place: the process is routepush's own, for /proc). Its whole log
// goes to logPath as well.
func (b *bench) startWatcher(logPath string, args ...string) (*watcherProc, error) {
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	argv := append([]string{"netns", "exec", b.lab.Bastion, b.routepushBin, "--config", b.lab.ConfigPath(), "watch"}, args...)
	cmd := exec.Command("ip", argv...)
	cmd.Env = append(os.Environ(), "HOME="+b.lab.HomeDir(), "SSH_AUTH_SOCK=")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, err
	}
	w := &watcherProc{cmd: cmd, exited: make(chan struct{}), log: log, seen: make(chan struct{}, 1)}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			w.take(sc.Text(), time.Now())
		}
		_ = cmd.Wait()
		w.mu.Lock()
		log.Close()
		w.mu.Unlock()
		close(w.exited)
	}()
	return w, nil
}

func (w *watcherProc) take(line string, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fmt.Fprintf(w.log, "%s %s\n", at.Format("15:04:05.000"), line)
	w.tail = append(w.tail, line)
	if len(w.tail) > 20 {
		w.tail = w.tail[1:]
	}
	f := parseLogLine(line)
	if f["msg"] != "round done" {
		return
	}
	w.rounds = append(w.rounds, logLine{at: at, fields: f})
	select {
	case w.seen <- struct{}{}:
	default:
	}
}

// note writes what the bench does into the watcher's log file, timed as
// its lines are.
func (w *watcherProc) note(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fmt.Fprintf(w.log, "%s bench: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// parseLogLine splits slog's text format: key=value, values quoted when
// they hold spaces.
func parseLogLine(s string) map[string]string {
	f := map[string]string{}
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimLeft(s, " ") {
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			break
		}
		key, rest := s[:eq], s[eq+1:]
		val := rest
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				break
			}
			val, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else if sp := strings.IndexByte(rest, ' '); sp >= 0 {
			val, rest = rest[:sp], rest[sp:]
		} else {
			rest = ""
		}
		f[key] = val
		s = rest
	}
	return f
}

// roundsSince returns the rounds logged after t.
func (w *watcherProc) roundsSince(t time.Time) []logLine {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []logLine
	for _, r := range w.rounds {
		if r.at.After(t) {
			out = append(out, r)
		}
	}
	return out
}

// waitRound waits for a round of this reason logged after t.
func (w *watcherProc) waitRound(t time.Time, reason string, bound time.Duration) (logLine, error) {
	deadline := time.NewTimer(bound)
	defer deadline.Stop()
	for {
		for _, r := range w.roundsSince(t) {
			if r.fields["reason"] == reason {
				return r, nil
			}
		}
		select {
		case <-w.seen:
		case <-w.exited:
			return logLine{}, fmt.Errorf("the watcher exited:\n%s", w.lastLines())
		case <-deadline.C:
			return logLine{}, fmt.Errorf("no %s round logged within %s:\n%s", reason, bound, w.lastLines())
		}
	}
}

func (w *watcherProc) lastLines() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.tail, "\n")
}

// stop sends SIGTERM and waits (60 s at most, then kills it).
func (w *watcherProc) stop() error {
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.exited:
	case <-time.After(60 * time.Second):
		_ = w.cmd.Process.Kill()
		<-w.exited
		return fmt.Errorf("the watcher did not stop within 60 s of SIGTERM")
	}
	if c := w.cmd.ProcessState.ExitCode(); c != 0 {
		return fmt.Errorf("the watcher exited %d:\n%s", c, w.lastLines())
	}
	return nil
}

// seconds reads a duration field of a log line ("1.234s", "850ms").
func (l logLine) seconds(key string) float64 {
	d, err := time.ParseDuration(l.fields[key])
	if err != nil {
		return 0
	}
	return d.Seconds()
}

// procSample is a process's CPU time and memory at one moment.
type procSample struct {
	at       time.Time
	cpu      time.Duration // user + system
	rss, hwm int64         // VmRSS, VmHWM in KiB
	threads  int
}

// clockTick is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux architecture routepush builds for.
const clockTick = 100

func sampleProc(pid int) (procSample, error) {
	s := procSample{at: time.Now()}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// Fields after the command name, which ends at the last ')': state
	// is field 3, utime 14, stime 15.
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(f) < 13 {
		return s, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return s, fmt.Errorf("/proc/%d/stat: bad times", pid)
	}
	s.cpu = time.Duration(ut+st) * time.Second / clockTick
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, _ := strings.Cut(line, ":")
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			s.rss = n
		case "VmHWM":
			s.hwm = n
		case "Threads":
			s.threads = int(n)
		}
	}
	return s, nil
}

// sshConnections counts the established TCP connections to port 22 in
// the process's network namespace (the bastion's, where only the watcher
// connects to nodes while it is measured).
func sshConnections(pid int) (int, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 3 && strings.HasSuffix(f[2], ":0016") && f[3] == "01" {
			n++
		}
	}
	return n, nil
}

// waitCtx sleeps for d unless ctx ends first.
func waitCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// nodesCPU is the CPU time the lab nodes' processes have used so far:
// each node's sshd, what it has reaped (connections, sessions, sftp-server,
// shells, ip) and what still runs in the node's namespace (a connection
// held open has not been reaped). Sampled before and after a join, the
// difference is what the join cost the nodes.
func nodesCPU(nodes []*lab.Node) (time.Duration, error) {
	inodes := map[uint64]bool{}
	for _, n := range nodes {
		var st syscall.Stat_t
		if err := syscall.Stat("/run/netns/"+n.NS, &st); err != nil {
			return 0, err
		}
		inodes[st.Ino] = true
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	var ticks int64
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) != nil || !inodes[st.Ino] {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue // gone meanwhile: its parent has it now, or soon
		}
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) < 15 {
			continue
		}
		for _, k := range f[11:15] { // utime, stime, cutime, cstime
			v, _ := strconv.ParseInt(k, 10, 64)
			ticks += v
		}
	}
	return time.Duration(ticks) * time.Second / clockTick, nil
}
