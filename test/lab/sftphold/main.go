// Command sftphold stands between sshd and sftp-server on a lab node and
// holds back the request that routepush's SFTP client sends with the
// nth occurrence of a byte pattern (a file name, a state written to a
// record), so that a test can act while routepush waits on that request:
// silence the node, kill the run.
//
//	sftphold DIR PATTERN NTH SERVER [ARGS...]
//
// When the pattern is seen it writes DIR/paused and a line to DIR/lines,
// then waits for DIR/go: "drop" ends the session without passing the
// request on; anything else passes it on and the session goes on as if
// nothing had happened. DIR/released says which it did.
package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

func main() {
	if len(os.Args) < 5 {
		fmt.Fprintln(os.Stderr, "usage: sftphold DIR PATTERN NTH SERVER [ARGS...]")
		os.Exit(2)
	}
	dir, pattern := os.Args[1], []byte(os.Args[2])
	nth, err := strconv.Atoi(os.Args[3])
	if err != nil || nth < 1 || len(pattern) == 0 {
		fmt.Fprintln(os.Stderr, "sftphold: NTH must be a positive number and PATTERN not empty")
		os.Exit(2)
	}
	server := exec.Command(os.Args[4], os.Args[5:]...)
	server.Stdout, server.Stderr = os.Stdout, os.Stderr
	in, err := server.StdinPipe()
	if err != nil {
		fail(err)
	}
	if err := server.Start(); err != nil {
		fail(err)
	}
	go func() {
		// The server's replies go straight to the client; when it
		// exits, so does the session.
		_ = server.Wait()
		os.Exit(0)
	}()
	forward(os.Stdin, in, dir, pattern, nth)
	in.Close()
	select {} // the server ends the session
}

// forward copies the client's requests to the server, holding back
// everything from the nth occurrence of pattern on until told to go.
func forward(from io.Reader, to io.Writer, dir string, pattern []byte, nth int) {
	var carry []byte // the end of what was passed on, for a pattern split across reads
	seen := 0
	buf := make([]byte, 64<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			if seen < nth {
				scan := append(carry, chunk...)
				at := -1
				for off := 0; ; {
					i := bytes.Index(scan[off:], pattern)
					if i < 0 {
						break
					}
					off += i + 1
					if seen++; seen == nth {
						at = off - 1 - len(carry)
						break
					}
				}
				if at >= 0 {
					if at > 0 {
						mustWrite(to, chunk[:at])
					}
					hold(dir)
					chunk = chunk[max(at, 0):]
				} else if k := len(pattern) - 1; len(scan) > k {
					carry = append([]byte(nil), scan[len(scan)-k:]...)
				} else {
					carry = append([]byte(nil), scan...)
				}
			}
			mustWrite(to, chunk)
		}
		if err != nil {
			return
		}
	}
}

// hold waits for DIR/go; "drop" ends the session there.
func hold(dir string) {
	line := fmt.Sprintf("%d HELD sftp request\n", os.Getpid())
	if f, err := os.OpenFile(filepath.Join(dir, "lines"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err == nil {
		_, _ = f.WriteString(line)
		f.Close()
	}
	if err := os.Mkdir(filepath.Join(dir, "paused"), 0o755); err != nil && !os.IsExist(err) {
		fail(err)
	}
	var verdict []byte
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go")); err == nil && len(b) > 0 {
			verdict = b
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	said := "forwarded"
	if string(bytes.TrimSpace(verdict)) == "drop" {
		said = "dropped"
	}
	tmp := filepath.Join(dir, "released.tmp")
	if os.WriteFile(tmp, []byte(said+"\n"), 0o644) == nil {
		_ = os.Rename(tmp, filepath.Join(dir, "released"))
	}
	if said == "dropped" {
		os.Exit(1)
	}
}

func mustWrite(w io.Writer, b []byte) {
	if _, err := w.Write(b); err != nil {
		os.Exit(1) // the server is gone: so is the session
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "sftphold:", err)
	os.Exit(1)
}
