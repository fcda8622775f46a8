package hosttool

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	if err := Check("sh"); err != nil {
		t.Fatalf("Check(sh) = %v", err)
	}
	err := Check("sh", "mksquashfs-not-here", "kiln-no-such-tool")
	if !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "kiln-no-such-tool") || strings.Contains(err.Error(), "sh,") {
		t.Fatalf("Check = %v", err)
	}
}

func TestRun(t *testing.T) {
	ctx := context.Background()
	var out bytes.Buffer
	t.Setenv("TZ", "Europe/Paris")
	t.Setenv("LC_TIME", "fr_FR.UTF-8")
	err := Run(ctx, Cmd{Name: "sh", Args: []string{"-c", `echo "$TZ $LC_TIME $SOURCE_DATE_EPOCH $X"`}, Epoch: 42, Env: []string{"X=y"}, Output: &out})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "UTC  42 y\n"; got != want {
		t.Errorf("output %q, want %q", got, want)
	}

	err = Run(ctx, Cmd{Name: "sh", Args: []string{"-c", "printf %05000d 0; echo the-reason >&2; exit 3"}})
	if err == nil || !strings.Contains(err.Error(), "the-reason") || len(err.Error()) > tailSize+200 {
		t.Errorf("failing run: %v", err)
	}
	if err := Run(ctx, Cmd{Name: "kiln-no-such-tool"}); !errors.Is(err, ErrMissing) {
		t.Errorf("missing tool: %v", err)
	}
}
