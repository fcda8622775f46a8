package secrets

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestGateStore(t *testing.T) {
	lab := filepath.Join(t.TempDir(), "lab")
	ca, err := LabCA(lab, "homelab")
	if err != nil {
		t.Fatal(err)
	}
	certs, err := MachineCerts(lab, ca, []Machine{{Hostname: "gate-1"}})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "secrets")
	if err := WriteGateTLS(dir, ca, certs["gate-1"]); err != nil {
		t.Fatal(err)
	}
	if err := WriteMachineSecrets(dir, "ceph-1", []byte(`{"ignition":{}}`)); err != nil {
		t.Fatal(err)
	}
	g := GateStore{Dir: dir}
	if !g.HasTLS() {
		t.Fatal("HasTLS = false after WriteGateTLS")
	}
	cert, pool, err := g.TLS()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "gate-1", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("the gate's certificate does not verify against the CA it carries: %v", err)
	}
	ca1, _ := os.ReadFile(filepath.Join(dir, GateCAFile))
	if n := len(ca1); n == 0 || pemCount(ca1, "PRIVATE KEY") != 0 {
		t.Errorf("%s holds a private key (or nothing): the gate must never carry the CA's key", GateCAFile)
	}
	b, err := g.MachineSecrets("ceph-1")
	if err != nil || string(b) != `{"ignition":{}}` {
		t.Errorf("MachineSecrets = %q, %v", b, err)
	}
	if _, err := g.MachineSecrets("ceph-9"); !errors.Is(err, ErrNoMachineSecrets) {
		t.Errorf("unknown machine: %v, want ErrNoMachineSecrets", err)
	}
	if _, err := g.MachineSecrets("../ca"); err == nil {
		t.Error("a path as a machine name was accepted")
	}
	for _, p := range []string{filepath.Join(dir, GateMachinesDir, "ceph-1.ign"), filepath.Join(dir, GateCertFile)} {
		if fi, _ := os.Stat(p); fi.Mode().Perm() != FileMode {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), FileMode)
		}
	}
	os.Chmod(filepath.Join(dir, GateMachinesDir, "ceph-1.ign"), 0o644)
	if _, err := g.MachineSecrets("ceph-1"); !errors.Is(err, ErrPermissions) {
		t.Errorf("an open secrets file was read: %v", err)
	}
}

// pemCount counts the PEM blocks of type typ in b.
func pemCount(b []byte, typ string) int {
	n := 0
	for {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			return n
		}
		if blk.Type == typ {
			n++
		}
	}
}
