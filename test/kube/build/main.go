// Command build builds the test kube-apiserver into the cache, if it is not
// there yet, and prints its path; `make test` runs it before the e2e tests
// so that its minutes of compiling are not spent inside a test's timeout.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/routepush/routepush/test/kube"
)

func main() {
	start := time.Now()
	bin, err := kube.Binary(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("kube-apiserver: %s (%s)\n", bin, time.Since(start).Round(time.Second))
}
