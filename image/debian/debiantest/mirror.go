// Package debiantest owns a stand-in Debian mirror for tests: files served
// from memory by an httptest server on loopback, with a request count, so
// that kiln's real fetch and verify code runs without the internet.
package debiantest

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// Mirror serves Files (URL path -> bytes) and counts Requests.
type Mirror struct {
	Files    map[string][]byte
	Requests atomic.Int64
	URL      string // base URL of the server, e.g. http://127.0.0.1:PORT

	srv *httptest.Server
}

// Close takes the mirror down before the test ends (an offline cache test).
func (m *Mirror) Close() { m.srv.Close() }

// NewMirror starts a mirror that stops when the test ends.
func NewMirror(t testing.TB) *Mirror {
	m := &Mirror{Files: map[string][]byte{}}
	m.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.Requests.Add(1)
		data, ok := m.Files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(data)
	}))
	t.Cleanup(m.srv.Close)
	m.URL = m.srv.URL
	return m
}
