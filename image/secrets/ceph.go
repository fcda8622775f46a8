package secrets

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Ceph's files in the lab's secrets directory: the cluster's secrets, and
// a directory of one mgr key per storage node (HOST.key).
const (
	CephFile   = "ceph.json"
	CephMgrDir = "ceph-mgr"
)

// A cephx secret as Ceph encodes it (CryptoKey::encode), little-endian:
// u16 type, u32 created seconds, u32 nanoseconds, u16 length, the key.
const (
	cephKeyLen  = 28
	cephAES     = 1 // CEPH_CRYPTO_AES, the only type cephx uses
	cephAESSize = 16
)

// CephKey is one cephx secret, as a keyring's `key = ...` holds it in
// base64. Its creation time is inside it, so a key re-read from its file is
// the same bytes. It never shows in fmt or slog output, nor in JSON.
type CephKey struct{ b [cephKeyLen]byte }

// CephKeys are the Ceph cluster's secrets: its fsid (not secret, but made
// once with the keys, which the monitors' store ties to it), the monitors'
// key (entity "mon."), the administrator's ("client.admin"), the one OSD
// nodes create their OSDs with ("client.bootstrap-osd"), and one key per
// storage node's manager ("mgr.HOST"), by host name.
type CephKeys struct {
	FSID         uuid.UUID
	Mon          CephKey
	Admin        CephKey
	BootstrapOSD CephKey
	Mgr          map[string]CephKey
}

// The keys never show in output, whatever the verb.
func (CephKey) String() string              { return "secrets.CephKey" + redacted }
func (CephKey) GoString() string            { return "secrets.CephKey" + redacted }
func (CephKey) LogValue() slog.Value        { return slog.StringValue(redacted) }
func (CephKey) Format(f fmt.State, _ rune)  { io.WriteString(f, "secrets.CephKey"+redacted) }
func (CephKeys) String() string             { return "secrets.CephKeys" + redacted }
func (CephKeys) GoString() string           { return "secrets.CephKeys" + redacted }
func (CephKeys) LogValue() slog.Value       { return slog.StringValue(redacted) }
func (CephKeys) Format(f fmt.State, _ rune) { io.WriteString(f, "secrets.CephKeys"+redacted) }

// Base64 is the key as keyrings, `ceph auth` and mount's secret= hold it.
// It is the secret itself: write it only into files that are secret too.
func (k CephKey) Base64() string { return base64.StdEncoding.EncodeToString(k.b[:]) }

// Created is the creation time recorded in the key.
func (k CephKey) Created() time.Time {
	return time.Unix(int64(binary.LittleEndian.Uint32(k.b[2:])), int64(binary.LittleEndian.Uint32(k.b[6:])))
}

// newCephKey makes a cephx AES key stamped with created.
func newCephKey(created time.Time) CephKey {
	var k CephKey
	binary.LittleEndian.PutUint16(k.b[0:], cephAES)
	binary.LittleEndian.PutUint32(k.b[2:], uint32(created.Unix()))
	binary.LittleEndian.PutUint32(k.b[6:], uint32(created.Nanosecond()))
	binary.LittleEndian.PutUint16(k.b[10:], cephAESSize)
	rand.Read(k.b[12:]) // never fails (crypto/rand since Go 1.24)
	return k
}

// ParseCephKey decodes a base64 cephx secret, refusing anything but the
// 28-byte AES layout. Its errors never quote s.
func ParseCephKey(s string) (CephKey, error) {
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return CephKey{}, errors.New("not standard base64")
	}
	if len(b) != cephKeyLen {
		return CephKey{}, fmt.Errorf("%d bytes, want %d", len(b), cephKeyLen)
	}
	if t := binary.LittleEndian.Uint16(b[0:]); t != cephAES {
		return CephKey{}, fmt.Errorf("key type %d, want %d (AES)", t, cephAES)
	}
	if n := binary.LittleEndian.Uint16(b[10:]); n != cephAESSize {
		return CephKey{}, fmt.Errorf("key length %d, want %d", n, cephAESSize)
	}
	var k CephKey
	copy(k.b[:], b)
	return k, nil
}

// cephFile is ceph.json.
type cephFile struct {
	FSID         string `json:"fsid"`
	Mon          string `json:"mon_key"`
	Admin        string `json:"client_admin_key"`
	BootstrapOSD string `json:"client_bootstrap_osd_key"`
}

const cephRemedy = "restore the file from a backup: a new fsid or new keys do not fit the running cluster; remove it only if no machine is installed yet"

// Ceph loads the lab's Ceph secrets from dir, generating what is missing:
// ceph.json the first time, and ceph-mgr/HOST.key for each host of mgrs
// (the storage nodes' host names) that has none. Existing files are only
// read, so a second call returns the same keys; the files of hosts no
// longer in mgrs are left alone and not returned.
func Ceph(dir string, mgrs []string) (CephKeys, error) {
	if err := checkHosts(mgrs); err != nil {
		return CephKeys{}, err
	}
	if err := ensureDir(dir); err != nil {
		return CephKeys{}, err
	}
	keys, err := once(filepath.Join(dir, CephFile), func() ([]byte, error) {
		return encodeCeph(time.Now())
	}, loadCeph)
	if err != nil {
		return CephKeys{}, err
	}
	keys.Mgr, err = perHost(dir, CephMgrDir, ".key", mgrs, func() ([]byte, error) {
		return []byte(newCephKey(time.Now()).Base64() + "\n"), nil
	}, loadMgrKey)
	if err != nil {
		return CephKeys{}, err
	}
	return keys, nil
}

func encodeCeph(now time.Time) ([]byte, error) {
	fsid, err := uuid.NewRandom()
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	return encodeJSON(cephFile{
		FSID:         fsid.String(),
		Mon:          newCephKey(now).Base64(),
		Admin:        newCephKey(now).Base64(),
		BootstrapOSD: newCephKey(now).Base64(),
	})
}

func loadCeph(path string) (CephKeys, error) {
	var f cephFile
	if err := readJSON(path, &f, cephRemedy); err != nil {
		return CephKeys{}, err
	}
	var k CephKeys
	var err error
	if f.FSID == "" {
		return CephKeys{}, damaged(path, errors.New("fsid is missing"), cephRemedy)
	}
	// uuid.Parse also takes urn: and {} forms; Ceph and kiln write the
	// canonical one.
	if k.FSID, err = uuid.Parse(f.FSID); err != nil || k.FSID.String() != f.FSID {
		return CephKeys{}, damaged(path, errors.New("fsid is not a lowercase UUID"), cephRemedy)
	}
	for _, fk := range []struct {
		field, value string
		key          *CephKey
	}{
		{"mon_key", f.Mon, &k.Mon},
		{"client_admin_key", f.Admin, &k.Admin},
		{"client_bootstrap_osd_key", f.BootstrapOSD, &k.BootstrapOSD},
	} {
		if fk.value == "" {
			return CephKeys{}, damaged(path, fmt.Errorf("%s is missing", fk.field), cephRemedy)
		}
		if *fk.key, err = ParseCephKey(fk.value); err != nil {
			return CephKeys{}, damaged(path, fmt.Errorf("%s is not a cephx key: %v", fk.field, err), cephRemedy)
		}
	}
	return k, nil
}

// loadMgrKey reads ceph-mgr/HOST.key: the base64 key and a newline.
func loadMgrKey(path, host string) (CephKey, error) {
	b, err := readPrivate(path)
	if err != nil {
		return CephKey{}, err
	}
	remedy := fmt.Sprintf("restore the file from a backup, or remove it to make a new key and give it to the cluster (ceph auth import) as mgr.%s", host)
	k, err := ParseCephKey(strings.TrimSuffix(string(b), "\n"))
	if err != nil {
		return CephKey{}, damaged(path, fmt.Errorf("not a cephx key: %v", err), remedy)
	}
	return k, nil
}
