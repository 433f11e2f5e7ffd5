package app

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"

	"github.com/routepush/routepush/orchestrator"
)

// progressDelay: runs shorter than this show no progress at all.
const progressDelay = 2 * time.Second

// showProgress draws a run's progress on w while the run lasts, if w is a
// terminal: a bar of nodes done, the counts read / verified / failed, and
// the node slowest at its current step. It returns the function that
// removes it, to call before the report is printed.
func showProgress(w io.Writer, pr *orchestrator.Progress) (stop func()) {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		select {
		case <-done:
			return
		case <-time.After(progressDelay):
		}
		total, _, _, _ := pr.Counts()
		p := mpb.New(mpb.WithOutput(w), mpb.WithWidth(24), mpb.WithRefreshRate(200*time.Millisecond))
		bar := p.AddBar(total,
			mpb.PrependDecorators(decor.Name("routepush "), decor.CountersNoUnit("%d/%d nodes ")),
			mpb.AppendDecorators(decor.Any(func(decor.Statistics) string {
				_, read, verified, failed := pr.Counts()
				s := fmt.Sprintf(" read %d, verified %d, failed %d", read, verified, failed)
				if node, d := pr.Slowest(time.Now()); node != "" {
					s += fmt.Sprintf("; slowest %s (%s)", node, d.Round(100*time.Millisecond))
				}
				return s
			})),
		)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			_, read, verified, failed := pr.Counts()
			bar.SetCurrent(max(read, verified) + failed)
			select {
			case <-done:
				bar.Abort(true)
				p.Wait()
				return
			case <-tick.C:
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}
