package artifacts

import (
	"archive/zip"
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// maxProgram bounds an unpacked program, so a zip bomb cannot fill the
// disk: Vault's, the largest, is under 500 MiB.
const maxProgram = 2 << 30

// Unpack puts the program of a binary file (a cached artifact's) at dst,
// mode 0755: from a HashiCorp release zip, its entry named name (the
// artifact's name) extracted; a bare ELF binary (k3s's, or an imported
// one) copied. dst is written whole or not at all.
func Unpack(src, name, dst string) error {
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("unpack: %w", err)
	}
	defer f.Close()
	head := make([]byte, headSize)
	n, _ := io.ReadFull(f, head)
	switch form := sniff(head[:n]); form {
	case formELF:
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("unpack: %w", err)
		}
		return writeProgram(dst, f, src)
	case formZip:
		return unzipProgram(src, name, dst)
	default:
		return fmt.Errorf("unpack %s: it is %s, want a zip archive or an ELF binary", src, describe(form))
	}
}

func unzipProgram(src, name, dst string) error {
	zr, err := zip.OpenReader(src)
	if err != nil {
		return fmt.Errorf("unpack %s: %w", src, err)
	}
	defer zr.Close()
	zf, err := program(zr, src, name)
	if err != nil {
		return fmt.Errorf("unpack: %w", err)
	}
	if zf.UncompressedSize64 > maxProgram {
		return fmt.Errorf("unpack %s: %s is %d bytes, more than kiln takes", src, name, zf.UncompressedSize64)
	}
	rc, err := zf.Open()
	if err != nil {
		return fmt.Errorf("unpack %s: %w", src, err)
	}
	defer rc.Close()
	return writeProgram(dst, rc, src+":"+name)
}

// writeProgram writes an ELF binary from r to dst, mode 0755, through a
// temporary file renamed into place; what names r for errors. Reading r
// to its end is what makes zip check the entry's CRC-32.
func writeProgram(dst string, r io.Reader, what string) error {
	br := bufio.NewReader(io.LimitReader(r, maxProgram+1))
	if magic, _ := br.Peek(len(elf.ELFMAG)); !bytes.Equal(magic, []byte(elf.ELFMAG)) {
		return fmt.Errorf("unpack %s: not an ELF binary", what)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".part-*")
	if err != nil {
		return fmt.Errorf("unpack: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op once renamed
	n, err := io.Copy(tmp, br)
	if err == nil && n > maxProgram {
		err = fmt.Errorf("more than %d bytes", maxProgram)
	}
	if err == nil {
		err = tmp.Chmod(0o755)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("unpack %s: %w", what, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("unpack: %w", err)
	}
	return nil
}
