package kube

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
)

// Binary returns the path of a kube-apiserver built from test/kube-apiserver,
// building it first if this version is not in the cache. The cache is
// $ROUTEPUSH_CACHE, else ~/.cache/routepush; a binary is named by a hash of
// the module's go.mod, go.sum and main.go, so a version bump rebuilds it.
// Building takes minutes on two cores; concurrent callers wait for one build.
func Binary(ctx context.Context) (string, error) {
	src, err := moduleDir()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, f := range []string{"go.mod", "go.sum", "main.go"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			return "", err
		}
		h.Write(b)
	}
	dir, err := CacheDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "kube-apiserver-"+hex.EncodeToString(h.Sum(nil))[:16])
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	lock, err := os.OpenFile(filepath.Join(dir, "kube-apiserver.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", err
	}
	if _, err := os.Stat(bin); err == nil {
		return bin, nil // built while we waited
	}
	tmp := bin + ".tmp"
	cmd := exec.CommandContext(ctx, "go", "build", "-ldflags=-s -w", "-o", tmp, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=readonly")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("kube: building kube-apiserver in %s: %w\n%s", src, err, out.String())
	}
	return bin, os.Rename(tmp, bin)
}

// CacheDir is where built binaries are kept between runs.
func CacheDir() (string, error) {
	dir := os.Getenv("ROUTEPUSH_CACHE")
	if dir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(base, "routepush")
	}
	return dir, os.MkdirAll(dir, 0o755)
}

// moduleDir finds test/kube-apiserver from this file's place in the tree.
func moduleDir() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("kube: cannot locate the source tree")
	}
	dir := filepath.Join(filepath.Dir(file), "..", "kube-apiserver")
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		return "", fmt.Errorf("kube: kube-apiserver module not found: %w", err)
	}
	return dir, nil
}
