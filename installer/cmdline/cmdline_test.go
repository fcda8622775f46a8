package cmdline

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	tests := []struct {
		line string
		want Params
	}{
		{
			"BOOT_IMAGE=/vmlinuz kiln.mode=install kiln.gate=http://10.0.0.1:8080/ kiln.mac=52:54:00:AA:BB:CC kiln.token=t0k console=ttyS0,115200\n",
			Params{Mode: "install", Gate: "http://10.0.0.1:8080", MAC: "52:54:00:aa:bb:cc", Token: "t0k"},
		},
		{
			"rdinit=/bbin/kiln-init kiln.mode=boot kiln.root=PARTUUID=AAAAAAAA-1111-2222-3333-444444444444 kiln.state=partuuid=bbbbbbbb-1111-2222-3333-444444444444",
			Params{Mode: "boot", Root: "aaaaaaaa-1111-2222-3333-444444444444", State: "bbbbbbbb-1111-2222-3333-444444444444"},
		},
		{`quiet "kiln.token=a b" kiln.mode=install`, Params{Mode: "install", Token: "a b"}},
		{"", Params{}},
	}
	for _, tc := range tests {
		if d := cmp.Diff(tc.want, Parse(tc.line)); d != "" {
			t.Errorf("Parse(%q) (-want +got):\n%s", tc.line, d)
		}
	}
}

func TestNeed(t *testing.T) {
	p := Params{Mode: "install", Gate: "http://g"}
	if err := p.Need("kiln.mode", "kiln.gate"); err != nil {
		t.Errorf("Need() = %v", err)
	}
	err := p.Need("kiln.mac", "kiln.token")
	if !errors.Is(err, ErrMissing) || err.Error() != "missing kernel parameter: kiln.mac kiln.token" {
		t.Errorf("Need() = %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(`kiln.mode=boot kiln.root=PARTUUID=x "kiln.state=y z"`)
	f.Fuzz(func(t *testing.T, line string) {
		_ = Parse(line)
	})
}
