package firstboot

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kilnlab/kiln/installer/gateclient/gatetest"
	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/roles"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func addrs(s ...string) func() ([]net.Addr, error) {
	return func() ([]net.Addr, error) {
		var out []net.Addr
		for _, a := range s {
			ip, n, _ := net.ParseCIDR(a)
			n.IP = ip
			out = append(out, n)
		}
		return out, nil
	}
}

func TestFirstBoot(t *testing.T) {
	m := Machine{Name: "ceph-1", MAC: "52:54:00:00:00:11", Address: "192.168.1.11/24"}
	g := gatetest.New(t, plan.Machine{Name: m.Name, MAC: m.MAC, Address: m.Address}, "tok", nil, nil)
	var ran []string
	console := &bytes.Buffer{}
	env := &Env{
		Log: quiet(), Console: console, Machine: withGate(m, g.URL), Hostname: host("ceph-1"), StatePartUUID: "abcd",
		Exec: func(_ context.Context, name string, args ...string) error {
			ran = append(ran, name+" "+strings.Join(args, " "))
			return nil
		},
		Addrs: addrs("127.0.0.1/8", "192.168.1.11/24"),
	}
	env.HTTP = (&gatetest.Gate{URL: g.URL}).Client()
	env.HTTP.MAC = m.MAC
	dir := t.TempDir()
	r := Runner{Dir: dir, Log: quiet()}
	for range 2 { // the second run finds everything done
		if err := r.Run(context.Background(), env.Phases()); err != nil {
			t.Fatal(err)
		}
	}
	if d := cmp.Diff([]string{"resize2fs /dev/disk/by-partuuid/abcd"}, ran); d != "" {
		t.Errorf("commands (-want +got):\n%s", d)
	}
	if got := console.String(); got != "KILN-BOOTED host=ceph-1 addr=192.168.1.11/24\n" {
		t.Errorf("console = %q", got)
	}
	if b := g.Booted(); len(b) != 1 || b[0].Address != "192.168.1.11/24" {
		t.Errorf("booted reports = %+v", b)
	}
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if d := cmp.Diff([]string{"announce.console", "announce.gate", "network.wait-address", "storage.grow-state"}, names); d != "" {
		t.Errorf("records (-want +got):\n%s", d)
	}
}

func TestResumeAfterFailure(t *testing.T) {
	m := Machine{Name: "c", Address: "10.0.0.5/24"}
	fail := true
	calls := 0
	env := &Env{Log: quiet(), Console: io.Discard, Machine: m, Hostname: host("c"), StatePartUUID: "x",
		Exec: func(context.Context, string, ...string) error {
			calls++
			if fail {
				return errors.New("power cut")
			}
			return nil
		},
		Addrs: addrs("10.0.0.5/24"),
	}
	r := Runner{Dir: t.TempDir(), Log: quiet()}
	if err := r.Run(context.Background(), env.Phases()); err == nil {
		t.Fatal("Run() hid a failing task")
	}
	if _, err := os.Stat(filepath.Join(r.Dir, "storage.grow-state")); err == nil {
		t.Error("a failed task was recorded")
	}
	fail = false
	if err := r.Run(context.Background(), env.Phases()); err != nil {
		t.Fatal(err)
	}
	if calls != 2 {
		t.Errorf("resize2fs ran %d times, want 2", calls)
	}
}

func TestGateUnreachableIsNotFatal(t *testing.T) {
	m := Machine{Name: "c", Address: "10.0.0.5/24"}
	console := &bytes.Buffer{}
	env := &Env{Log: quiet(), Console: console, Machine: m, Hostname: host("c"), StatePartUUID: "x",
		Exec:  func(context.Context, string, ...string) error { return nil },
		Addrs: addrs("10.0.0.5/24"),
		HTTP:  (&gatetest.Gate{URL: "http://127.0.0.1:1"}).Client(),
	}
	r := Runner{Dir: t.TempDir(), Log: quiet()}
	if err := r.Run(context.Background(), env.Phases()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(r.Dir, "announce.gate")); err == nil {
		t.Error("an unreported boot was recorded as reported")
	}
	if !strings.Contains(console.String(), "KILN-BOOTED host=c addr=10.0.0.5/24") {
		t.Errorf("console = %q", console)
	}
}

func TestAddressNeverAppears(t *testing.T) {
	env := &Env{Machine: Machine{Address: "10.0.0.5/24"}, Addrs: addrs("10.0.0.6/24"), Poll: time.Millisecond, AddressTimeout: time.Millisecond}
	if err := env.waitAddress(context.Background()); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waitAddress() = %v", err)
	}
}

func TestLoadMachine(t *testing.T) {
	p := filepath.Join(t.TempDir(), "machine.json")
	if err := os.WriteFile(p, []byte(`{"name":"ceph-1","address":"10.0.0.11/24","mac":"52:54:00:00:00:11","gate_url":"http://10.0.0.2:8080"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := LoadMachine(p)
	if err != nil || m.Name != "ceph-1" || m.GateURL != "http://10.0.0.2:8080" {
		t.Errorf("LoadMachine() = %+v, %v", m, err)
	}
}

func TestUnit(t *testing.T) {
	for _, want := range []string{"After=network-online.target", "StandardOutput=journal+console", "ExecStart=" + BinaryPath, "WantedBy=multi-user.target", "Type=oneshot"} {
		if !strings.Contains(Unit, want) {
			t.Errorf("unit lacks %q", want)
		}
	}
}

func withGate(m Machine, url string) Machine {
	m.GateURL = url
	return m
}

func host(name string) func() (string, error) {
	return func() (string, error) { return name, nil }
}

// The plan shows each role's first-boot phases from package roles: they
// must be the phases this program runs.
func TestPhasesMatchRoles(t *testing.T) {
	var names []string
	for _, p := range (&Env{}).Phases() {
		names = append(names, p.Name)
	}
	for _, r := range roles.All() {
		if !r.HasRootfs() {
			continue
		}
		if diff := cmp.Diff(r.FirstBoot, names); diff != "" {
			t.Errorf("role %s first-boot phases (-roles +firstboot):\n%s", r.Name, diff)
		}
	}
}
