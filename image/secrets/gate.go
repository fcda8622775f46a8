package secrets

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// The gate's share of the lab's TLS and machine secrets, in the payload's
// secrets/ (and kiln build's DIR/gate-secrets/ for `kiln gate serve`):
//
//	ca.crt               the lab CA's certificate (never its key)
//	gate.pem             the gate's certificate and key (its mutual-TLS side)
//	machines/NAME.ign    each netbooted machine's secret Ignition config,
//	                     handed to that machine's installer once per install
const (
	GateCAFile      = "ca.crt"
	GateCertFile    = "gate.pem"
	GateMachinesDir = "machines"
)

// ErrNoMachineSecrets is returned when the gate holds no secrets for a
// machine (a payload built before the machine was added, say).
var ErrNoMachineSecrets = errors.New("no secrets for this machine")

// WriteGateTLS writes the CA's certificate and the gate's certificate and
// key into dir (0700, files 0600), replacing what is there.
func WriteGateTLS(dir string, ca CA, gate MachineCert) error {
	if err := ensureDir(dir); err != nil {
		return err
	}
	if err := replace(filepath.Join(dir, GateCAFile), ca.CertPEM()); err != nil {
		return err
	}
	return replace(filepath.Join(dir, GateCertFile), append(gate.CertPEM(), gate.KeyPEM()...))
}

// WriteMachineSecrets writes machine name's secret Ignition config into
// dir/machines/NAME.ign (0600), replacing what is there.
func WriteMachineSecrets(dir, name string, ign []byte) error {
	if err := checkHosts([]string{name}); err != nil {
		return err
	}
	md := filepath.Join(dir, GateMachinesDir)
	if err := ensureDir(dir); err != nil {
		return err
	}
	if err := ensureDir(md); err != nil {
		return err
	}
	return replace(filepath.Join(md, name+".ign"), ign)
}

// GateStore reads the gate's share from its directory (on the gate:
// /payload/secrets), checking permissions on every read.
type GateStore struct{ Dir string }

// MachineSecrets is machine name's secret Ignition config.
func (g GateStore) MachineSecrets(name string) ([]byte, error) {
	if err := checkHosts([]string{name}); err != nil {
		return nil, err
	}
	p := filepath.Join(g.Dir, GateMachinesDir, name+".ign")
	if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", name, ErrNoMachineSecrets)
	}
	return readPrivate(p)
}

// TLS is the gate's mutual-TLS material: its certificate and key, and the
// lab CA as the pool client certificates must chain to.
func (g GateStore) TLS() (tls.Certificate, *x509.CertPool, error) {
	caPEM, err := readPrivate(filepath.Join(g.Dir, GateCAFile))
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return tls.Certificate{}, nil, gateDamaged(filepath.Join(g.Dir, GateCAFile), errors.New("no certificate"))
	}
	p := filepath.Join(g.Dir, GateCertFile)
	b, err := readPrivate(p)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	cert, err := tls.X509KeyPair(b, b)
	if err != nil {
		return tls.Certificate{}, nil, gateDamaged(p, err)
	}
	return cert, pool, nil
}

// HasTLS reports whether dir holds the gate's TLS share (a payload built
// before kiln had one does not).
func (g GateStore) HasTLS() bool {
	_, err := os.Stat(filepath.Join(g.Dir, GateCertFile))
	return err == nil
}

func gateDamaged(path string, err error) error {
	return damaged(path, err, "rebuild the gate's image with kiln build and flash it again")
}
