package pxe

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/pxe/state"
)

func testPlan() *plan.Plan {
	return &plan.Plan{
		Lab:     "homelab",
		Network: plan.Network{CIDR: "10.77.0.0/24", Gateway: "10.77.0.254", DHCPMode: "proxy", Range: "10.77.0.100-10.77.0.150"},
		Gate:    plan.Gate{Name: "gate-1", Address: "10.77.0.1"},
		Machines: []plan.Machine{
			{Name: "gate-1", Role: "gate", Board: "rpi4", Arch: "arm64", MAC: "52:54:00:00:00:0a", Address: "10.77.0.1/24"},
			{Name: "ceph-1", Role: "storage", Board: "pc", Arch: "amd64", MAC: "52:54:00:00:01:01", Address: "10.77.0.11/24", RoleImage: "roles/storage.squashfs"},
			{Name: "ceph-2", Role: "storage", Board: "pc", Arch: "amd64", MAC: "52:54:00:00:01:02", Address: "10.77.0.12/24", RoleImage: "roles/storage.squashfs"},
		},
	}
}

func TestMachinesAndReinstall(t *testing.T) {
	p := testPlan()
	dir := t.TempDir()
	rows, err := Machines(p, dir)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range rows {
		got[r.Machine] = r.State
	}
	want := map[string]string{"gate-1": "-", "ceph-1": state.Install, "ceph-2": state.Install}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: state %q, want %q", k, got[k], v)
		}
	}

	// ceph-1 installs, then fails; ceph-2 installs fine.
	st, err := openStates(dir)
	if err != nil {
		t.Fatal(err)
	}
	for mac, ok := range map[string]bool{"52:54:00:00:01:01": false, "52:54:00:00:01:02": true} {
		tok, err := st.ArmToken(mac, "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.BeginInstall(mac, "", tok); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Finish(mac, "", tok, ok, "no disk WD-X"); err != nil {
			t.Fatal(err)
		}
	}
	rows, err = Machines(p, dir)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteMachines(&buf, rows); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"MACHINE", "ceph-1", "failed", "error: no disk WD-X", "ceph-2", "installed", "gate-1", "never netbooted"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}

	for _, who := range []string{"ceph-1", "52-54-00-00-01-02"} {
		row, err := Reinstall(p, dir, who)
		if err != nil || row.State != state.Install {
			t.Errorf("Reinstall(%s) = %+v, %v", who, row, err)
		}
	}
	if _, err := Reinstall(p, dir, "gate-1"); !errors.Is(err, ErrNotNetbooted) {
		t.Errorf("Reinstall(gate) = %v, want ErrNotNetbooted", err)
	}
	if _, err := Reinstall(p, dir, "nope"); !errors.Is(err, ErrUnknownMachine) {
		t.Errorf("Reinstall(nope) = %v, want ErrUnknownMachine", err)
	}
}

func TestNewChecksConfig(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	for _, cfg := range []Config{
		{Interface: "eth0", Logger: log},
		{Interface: "eth0", Plan: testPlan(), Logger: log, Mode: "relay", StateDir: t.TempDir()},
		{Plan: testPlan(), Logger: log, StateDir: t.TempDir()},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v): want error", cfg)
		}
	}
	s, err := New(Config{Interface: "eth0", Plan: testPlan(), Logger: log, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.Mode != ModeProxy || s.GateURL() != "http://10.77.0.1:8080" {
		t.Errorf("defaults: mode %q, url %q", s.cfg.Mode, s.GateURL())
	}
}
