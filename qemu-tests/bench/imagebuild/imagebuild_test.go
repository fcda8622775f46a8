package imagebuild

import (
	"strings"
	"testing"
	"time"
)

func TestParseSteps(t *testing.T) {
	out := `[1/11] fetch pinned inputs
      done in 600ms
[5/11] role images
      /x/roles/compute.squashfs: mmdebstrap + mksquashfs (a few minutes; log /x/logs/rootfs-compute.log)
      done in 4m32.8s
[6/11] machine images
      done in 1.2s
`
	r := kilnRun{steps: map[string]time.Duration{}}
	if err := parseSteps(strings.NewReader(out), &r); err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Duration{
		"fetch pinned inputs": 600 * time.Millisecond,
		stepRoles:             4*time.Minute + 32800*time.Millisecond,
		stepMachines:          1200 * time.Millisecond,
	}
	for k, v := range want {
		if r.steps[k] != v {
			t.Errorf("%s: %s, want %s", k, r.steps[k], v)
		}
	}
	if len(r.order) != 3 || r.order[1] != stepRoles {
		t.Errorf("order %v", r.order)
	}
	if err := parseSteps(strings.NewReader("[1/2] fetch pinned inputs\n      done in 1s\n"), &kilnRun{steps: map[string]time.Duration{}}); err == nil {
		t.Error("a build without a role images time parsed")
	}
}
