package httpd

import (
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kilnlab/kiln/pxe/api"
	"github.com/kilnlab/kiln/pxe/state"
)

// maxRefusals is how many refused requests the status page remembers; a
// flood of them must not grow the gate's memory.
const maxRefusals = 20

// maxRefusalText bounds each network-supplied string of a Refusal.
const maxRefusalText = 200

// Refusal is one refused installer API request or report (DESIGN §10: a
// second use of a token, another MAC, a machine not in install, a report
// without the machine's identity or signed as another: logged and shown
// on the status page). It keeps the request's path, never its query,
// which is where a token travels.
type Refusal struct {
	At   time.Time `json:"at"`
	Peer string    `json:"peer"`
	// What names the request for people ("secrets hand-out"); Method and
	// Path are the request as sent.
	What    string `json:"what"`
	Method  string `json:"method"`
	Path    string `json:"path"`
	MAC     string `json:"mac"`
	Machine string `json:"machine,omitempty"`
	Why     string `json:"why"`
}

// refusals is a bounded list of the latest refusals, newest last.
type refusals struct {
	mu   sync.Mutex
	list []Refusal
}

func (rs *refusals) add(r Refusal) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if len(rs.list) == maxRefusals {
		rs.list = slices.Delete(rs.list, 0, 1)
	}
	rs.list = append(rs.list, r)
}

// newestFirst returns a copy, newest first.
func (rs *refusals) newestFirst() []Refusal {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	out := make([]Refusal, len(rs.list)) // [] in JSON, not null
	copy(out, rs.list)
	slices.Reverse(out)
	return out
}

func (s *Server) refusal(r *http.Request, why string, err error) Refusal {
	if err != nil {
		why += ": " + err.Error()
	}
	ref := Refusal{
		At: s.cfg.Now().UTC(), Peer: clip(peerHost(r.RemoteAddr)), What: requestName(r.URL.Path),
		Method: clip(r.Method), Path: clip(r.URL.Path),
		MAC: clip(r.PathValue("mac")), Why: clip(why),
	}
	if mac, err := state.NormalizeMAC(ref.MAC); err == nil {
		if m, ok := s.byMAC[mac]; ok {
			ref.Machine = m.Name
		}
	}
	return ref
}

// requestName names the route of path for the status page: people read
// "secrets hand-out" faster than a URL, and the name is one of a fixed set
// whatever the path carries.
func requestName(path string) string {
	for _, rt := range []struct{ prefix, name string }{
		{api.PathInstall, "install manifest"},
		{api.PathProgress, "install progress"},
		{api.PathResult, "install result"},
		{api.PathSecrets, "secrets hand-out"},
		{api.PathBooted, "first-boot report"},
		{api.PathPhase, "first-boot phase report"},
		{api.PathHealth, "health report"},
	} {
		if strings.HasPrefix(path, rt.prefix) {
			return rt.name
		}
	}
	return "request"
}

// peerHost drops the client's port: noise on a page for people.
func peerHost(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

func clip(s string) string {
	if len(s) > maxRefusalText {
		return strings.ToValidUTF8(s[:maxRefusalText], "") + "..."
	}
	return s
}
