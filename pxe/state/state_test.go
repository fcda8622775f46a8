package state

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const mac = "52:54:00:00:01:01"

func open(t *testing.T, dir string) *Store {
	t.Helper()
	clock := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	s, err := Open(dir, func() time.Time { clock = clock.Add(time.Second); return clock })
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNeverSeenIsInstall(t *testing.T) {
	s := open(t, t.TempDir())
	r, err := s.Get(mac, "ceph-1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Record{MAC: mac, Machine: "ceph-1", State: Install}, r); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}

func TestLifecycle(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	tok, err := s.ArmToken(mac, "ceph-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) != 32 {
		t.Fatalf("token %q: want 32 hex chars", tok)
	}
	if _, err := s.BeginInstall(mac, "ceph-1", "nope"); !errors.Is(err, ErrBadToken) {
		t.Fatalf("BeginInstall(wrong token) = %v, want ErrBadToken", err)
	}
	if _, err := s.BeginInstall(mac, "ceph-1", tok); err != nil {
		t.Fatal(err)
	}
	// A restart (a new Store on the same dir) sees the same record.
	s = open(t, dir)
	r, err := s.ReportProgress(mac, "ceph-1", tok, Progress{Phase: "write", Done: 1, Total: 2})
	if err != nil {
		t.Fatal(err)
	}
	if r.State != Installing || r.Progress.Phase != "write" || r.ProgressAt.IsZero() {
		t.Fatalf("after progress: %+v", r)
	}
	if r, err = s.Finish(mac, "ceph-1", tok, true, ""); err != nil || r.State != Installed || r.Token != "" {
		t.Fatalf("Finish ok = %+v, %v", r, err)
	}
	// The token is consumed: a second use is refused.
	if _, err := s.BeginInstall(mac, "ceph-1", tok); !errors.Is(err, ErrBadToken) {
		t.Fatalf("reuse of consumed token = %v, want ErrBadToken", err)
	}
	if _, err := s.ArmToken(mac, "ceph-1"); !errors.Is(err, ErrWrongState) {
		t.Fatalf("ArmToken(installed) = %v, want ErrWrongState", err)
	}
	if r, err = s.Rearm(mac, "ceph-1"); err != nil || r.State != Install || r.Progress != nil || !r.ProgressAt.IsZero() {
		t.Fatalf("Rearm = %+v, %v", r, err)
	}
	tok2, err := s.ArmToken(mac, "ceph-1")
	if err != nil || tok2 == tok {
		t.Fatalf("ArmToken after re-arm = %q, %v", tok2, err)
	}
	if _, err := s.BeginInstall(mac, "ceph-1", tok2); err != nil {
		t.Fatal(err)
	}
	r, err = s.Finish(mac, "ceph-1", tok2, false, "disk WD-X not found")
	if err != nil || r.State != Failed || r.Error != "disk WD-X not found" {
		t.Fatalf("Finish error = %+v, %v", r, err)
	}
	list, err := s.List()
	if err != nil || len(list) != 1 || list[0].State != Failed {
		t.Fatalf("List = %+v, %v", list, err)
	}
}

func TestProgressNeedsInstalling(t *testing.T) {
	s := open(t, t.TempDir())
	tok, err := s.ArmToken(mac, "ceph-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReportProgress(mac, "ceph-1", tok, Progress{Phase: "x"}); !errors.Is(err, ErrWrongState) {
		t.Fatalf("progress before install manifest = %v, want ErrWrongState", err)
	}
}

func TestNormalizeMAC(t *testing.T) {
	for in, want := range map[string]string{
		"52:54:00:00:01:01": "52:54:00:00:01:01",
		"52-54-00-00-01-0A": "52:54:00:00:01:0a",
	} {
		got, err := NormalizeMAC(in)
		if err != nil || got != want {
			t.Errorf("NormalizeMAC(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "zz", "../../etc/passwd", "00:00:5e:00:53:01:02:03"} {
		if _, err := NormalizeMAC(bad); err == nil {
			t.Errorf("NormalizeMAC(%q): want error", bad)
		}
	}
}
