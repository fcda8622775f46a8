package main

import (
	"os"
	"testing"
	"time"
)

// TestWaitPipeRead: before rebooting, kiln-init waits until u-root's init
// has read its last console lines out of the pipe it was given.
func TestWaitPipeRead(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if _, err := w.WriteString("KILN-INSTALL-OK node-a\n"); err != nil {
		t.Fatal(err)
	}
	read := make(chan time.Time, 1)
	go func() {
		time.Sleep(300 * time.Millisecond)
		buf := make([]byte, 64)
		r.Read(buf)
		read <- time.Now()
	}()
	waitPipeRead(int(w.Fd()), 5*time.Second)
	done := time.Now()
	select {
	case at := <-read:
		if done.Before(at) {
			t.Errorf("returned %s before the reader read the line", at.Sub(done))
		}
	default:
		t.Error("returned with the line still in the pipe")
	}

	// Nothing to read: returns at once; a full pipe nobody reads: after
	// the limit.
	start := time.Now()
	waitPipeRead(int(w.Fd()), 5*time.Second)
	if d := time.Since(start); d > time.Second {
		t.Errorf("empty pipe: waited %s", d)
	}
	w.WriteString("x")
	start = time.Now()
	waitPipeRead(int(w.Fd()), 200*time.Millisecond)
	if d := time.Since(start); d < 200*time.Millisecond || d > 2*time.Second {
		t.Errorf("unread pipe: waited %s, want the 200ms limit", d)
	}
}
