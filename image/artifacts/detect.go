package artifacts

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Forms of file an artifact's file may be, told by their magic bytes.
const (
	formZip  = "zip"
	formELF  = "elf"
	formZstd = "zstd" // k3s's airgap images, .tar.zst
)

// sniff tells a file's form from its first bytes, "" if none of them.
func sniff(head []byte) string {
	switch {
	case bytes.HasPrefix(head, []byte("PK\x03\x04")):
		return formZip
	case bytes.HasPrefix(head, []byte(elf.ELFMAG)):
		return formELF
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return formZstd
	}
	return ""
}

func describe(form string) string {
	switch form {
	case formZip:
		return "a zip archive"
	case formELF:
		return "an ELF binary"
	case formZstd:
		return "zstd-compressed (a .tar.zst)"
	}
	return "neither a zip archive, an ELF binary nor zstd-compressed"
}

func describeAll(forms []string) string {
	d := make([]string, len(forms))
	for i, f := range forms {
		d[i] = describe(f)
	}
	return strings.Join(d, " or ")
}

// elfArch is the Go name of an ELF header's machine, "" if head is no ELF
// header.
func elfArch(head []byte) string {
	if sniff(head) != formELF || len(head) < 20 {
		return ""
	}
	var order binary.ByteOrder = binary.LittleEndian
	if elf.Data(head[elf.EI_DATA]) == elf.ELFDATA2MSB {
		order = binary.BigEndian
	}
	switch m := elf.Machine(order.Uint16(head[18:20])); m {
	case elf.EM_X86_64:
		return "amd64"
	case elf.EM_AARCH64:
		return "arm64"
	case elf.EM_ARM:
		return "arm"
	case elf.EM_386:
		return "386"
	default:
		return m.String()
	}
}

// fileInfo is what an import learns of a file.
type fileInfo struct {
	sha     string
	size    int64
	form    string
	elfArch string // of the file, or (once looked into) of the program inside a zip
	// nameVersion is the version a HashiCorp release zip's name says.
	nameVersion string
}

// headSize is enough of a file for its form and ELF machine.
const headSize = 64

// inspect hashes the file and reads its form and, for a binary, its arch;
// name is the artifact's, which a release zip's name starts with.
func inspect(path, name string) (fileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return fileInfo{}, fmt.Errorf("import: %w", err)
	}
	defer f.Close()
	head := make([]byte, headSize)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return fileInfo{}, fmt.Errorf("import: %w", err)
	}
	head = head[:n]
	h := sha256.New()
	h.Write(head)
	rest, err := io.Copy(h, f)
	if err != nil {
		return fileInfo{}, fmt.Errorf("import: %w", err)
	}
	return fileInfo{sha: hex.EncodeToString(h.Sum(nil)), size: int64(n) + rest, form: sniff(head),
		elfArch: elfArch(head), nameVersion: zipNameVersion(name, filepath.Base(path))}, nil
}

// zipNameVersion is the version in a HashiCorp release zip's name,
// name_VERSION_linux_ARCH.zip; "" for any other name.
func zipNameVersion(name, base string) string {
	rest, ok := strings.CutPrefix(base, name+"_")
	if !ok || !strings.HasSuffix(rest, ".zip") {
		return ""
	}
	i := strings.LastIndex(rest, "_linux_")
	if i <= 0 {
		return ""
	}
	return rest[:i]
}

// zipArch is the arch of the program inside a release zip; a zip without
// it is refused.
func zipArch(path, name string) (string, error) {
	zr, err := zip.OpenReader(path)
	if err != nil {
		return "", fmt.Errorf("import %s: %w", path, err)
	}
	defer zr.Close()
	zf, err := program(zr, path, name)
	if err != nil {
		return "", err
	}
	rc, err := zf.Open()
	if err != nil {
		return "", fmt.Errorf("import %s: %w", path, err)
	}
	defer rc.Close()
	head := make([]byte, headSize)
	n, _ := io.ReadFull(rc, head)
	arch := elfArch(head[:n])
	if arch == "" {
		return "", fmt.Errorf("import %s: %s inside is not an ELF binary", path, name)
	}
	return arch, nil
}

// program finds the program name at the top of a release zip.
func program(zr *zip.ReadCloser, path, name string) (*zip.File, error) {
	for _, zf := range zr.File {
		if zf.Name == name && zf.Mode().IsRegular() {
			return zf, nil
		}
	}
	return nil, fmt.Errorf("%s holds no program %q", path, name)
}
