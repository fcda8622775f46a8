package payload

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestInfoRoundTrip(t *testing.T) {
	dir := t.TempDir()
	want := Info{Lab: "homelab", Machine: "gate-1", BuildTime: time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC),
		InterfaceMAC: "52:54:00:00:00:0a", Profile: ProfileFile}
	if err := WriteInfo(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadInfo(dir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

func TestInfoCheck(t *testing.T) {
	good := Info{Lab: "l", Machine: "g", BuildTime: time.Unix(1, 0), InterfaceMAC: "52:54:00:00:00:0a", Profile: "p.yaml"}
	for name, mut := range map[string]func(*Info){
		"no mac":      func(i *Info) { i.InterfaceMAC = "" },
		"no machine":  func(i *Info) { i.Machine = "" },
		"no time":     func(i *Info) { i.BuildTime = time.Time{} },
		"abs profile": func(i *Info) { i.Profile = "/etc/p.yaml" },
		"escaping":    func(i *Info) { i.Profile = "../p.yaml" },
	} {
		i := good
		mut(&i)
		if i.Check() == nil {
			t.Errorf("%s: Check accepted %+v", name, i)
		}
	}
	if err := good.Check(); err != nil {
		t.Errorf("good: %v", err)
	}
}
