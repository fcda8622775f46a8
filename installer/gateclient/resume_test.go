package gateclient

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kilnlab/kiln/image/bundle"
	"github.com/kilnlab/kiln/pxe/api"
)

// flakyGate serves one file with http.ServeContent, but its first
// breaks answers are cut after cutAt bytes (the connection closed, as a
// gate losing power mid-stream looks to a client that gets a reset).
type flakyGate struct {
	data   []byte
	cutAt  int
	mu     sync.Mutex
	breaks int
	ranges []string
}

func (g *flakyGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	g.ranges = append(g.ranges, r.Header.Get("Range"))
	cut := g.breaks > 0
	if cut {
		g.breaks--
	}
	g.mu.Unlock()
	if !cut {
		http.ServeContent(w, r, "root.squashfs", time.Time{}, bytes.NewReader(g.data))
		return
	}
	w.Header().Set("Content-Length", "0")
	hj, _ := w.(http.Hijacker)
	conn, buf, err := hj.Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	start := 0
	if rg := r.Header.Get("Range"); rg != "" {
		start, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(rg, "bytes="), "-"))
		buf.WriteString("HTTP/1.1 206 Partial Content\r\n")
		buf.WriteString("Content-Range: bytes " + strconv.Itoa(start) + "-" + strconv.Itoa(len(g.data)-1) + "/" + strconv.Itoa(len(g.data)) + "\r\n")
	} else {
		buf.WriteString("HTTP/1.1 200 OK\r\n")
	}
	buf.WriteString("Content-Length: " + strconv.Itoa(len(g.data)-start) + "\r\n\r\n")
	buf.Write(g.data[start : start+g.cutAt])
	buf.Flush()
}

// TestResume: a download broken twice mid-file is resumed where it
// stopped, by ranges, and yields exactly the file.
func TestResume(t *testing.T) {
	data := make([]byte, 3<<20)
	rand.Read(data)
	g := &flakyGate{data: data, cutAt: 1 << 20, breaks: 2}
	srv := httptest.NewServer(g)
	defer srv.Close()
	sum := sha256.Sum256(data)
	f := bundle.File{Path: "roles/storage.squashfs", Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
	c := &Client{Base: srv.URL, MAC: "52:54:00:00:00:11", Token: "tok", Resume: 10 * time.Second}
	body, err := c.Open(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(body)
	body.Close()
	if err != nil {
		t.Fatalf("read: %v (ranges asked %q)", err, g.ranges)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("got %d bytes, not the file", len(got))
	}
	want := []string{"", "bytes=1048576-", "bytes=2097152-"}
	if strings.Join(g.ranges, ",") != strings.Join(want, ",") {
		t.Errorf("requests' ranges %q, want %q", g.ranges, want)
	}
}

// TestResumeGivesUp: a gate that stays away past Resume fails the read,
// saying where the file broke.
func TestResumeGivesUp(t *testing.T) {
	data := make([]byte, 2<<20)
	g := &flakyGate{data: data, cutAt: 1 << 20, breaks: 1}
	srv := httptest.NewServer(g)
	sum := sha256.Sum256(data)
	f := bundle.File{Path: "roles/storage.squashfs", Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
	c := &Client{Base: srv.URL, MAC: "52:54:00:00:00:11", Resume: 1500 * time.Millisecond}
	body, err := c.Open(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	srv.Close() // the gate is gone for good
	_, err = io.ReadAll(body)
	if err == nil || !strings.Contains(err.Error(), "broken at byte 1048576") {
		t.Errorf("read from a gate gone for good: %v", err)
	}
}

// TestResultRetried: the result is posted again while the gate answers
// 503, and not after a refusal.
func TestResultRetried(t *testing.T) {
	var mu sync.Mutex
	codes := []int{http.StatusServiceUnavailable, http.StatusServiceUnavailable, http.StatusNoContent}
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.WriteHeader(codes[min(calls, len(codes)-1)])
		calls++
	}))
	defer srv.Close()
	c := &Client{Base: srv.URL, MAC: "52:54:00:00:00:11", Token: "tok", Resume: time.Minute}
	if err := c.Result(context.Background(), api.Result{OK: true}); err != nil {
		t.Fatal(err)
	}
	if calls != 3 {
		t.Errorf("%d posts, want 3", calls)
	}
	codes, calls = []int{http.StatusForbidden}, 0
	if err := c.Result(context.Background(), api.Result{OK: true}); !errors.Is(err, ErrForbidden) || calls != 1 {
		t.Errorf("a refused result: %v after %d posts, want ErrForbidden after 1", err, calls)
	}
}
