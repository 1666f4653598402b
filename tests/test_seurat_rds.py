"""Seurat/dgCMatrix ``.rds`` loader: fixtures written without R, by rds2py's native writer (the dict form
``parse_rds`` returns) or, for what that writer cannot express (closures, bytecode, the pre-R-3.5 format
version 2), by the small XDR serializer below."""

import contextlib
import gzip
import io
import struct
import sys

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from stbench.errors import DatasetError

with contextlib.redirect_stdout(io.StringIO()):  # rds2py prints notes about its optional packages
    _native = pytest.importorskip("rds2py.lib_rds_parser")

from stbench.data.loaders import seurat_rds  # noqa: E402
from stbench.data.loaders.seurat_rds import read_seurat_rds  # noqa: E402

NA_INT = -(2**31)
GENES = ["Lrp2", "Slc34a1", "Umod", "Nphs1", "Havcr1"]
CELLS = [f"AAACCTG{i}-1_0h" for i in range(7)]
COUNTS = np.array([[0, 3, 0, 1, 0, 0, 7],  # genes x cells, as in R
                   [2, 0, 0, 0, 5, 1, 0],
                   [0, 0, 4, 0, 0, 0, 0],
                   [1, 1, 0, 0, 0, 2.5, 0],  # non-integer values are loaded as they are
                   [0, 0, 0, 9, 0, 0, 1]], dtype=float)


# ---- R objects in rds2py's dict form ----------------------------------------------------------------

def ints(a, **attrs):
    return {"type": "integer", "data": np.asarray(a, dtype=np.int32), "attributes": attrs}


def dbls(a, **attrs):
    return {"type": "double", "data": np.asarray(a, dtype=np.float64), "attributes": attrs}


def lgls(a, **attrs):
    return {"type": "boolean", "data": np.asarray(a, dtype=bool), "attributes": attrs}


def strs(a):
    return {"type": "string", "data": list(a)}


NULL = {"type": "null"}


def rlist(items, names=None, **attrs):
    if names is not None:
        attrs["names"] = strs(names)
    return {"type": "vector", "data": list(items), "attributes": attrs}


def s4(cls, pkg, **slots):
    return {"type": "S4", "class_name": cls, "package_name": pkg,
            "attributes": {k.replace("_", "."): v for k, v in slots.items()}}


def factor(values, levels):
    codes = [NA_INT if v is None else levels.index(v) + 1 for v in values]
    return ints(codes, levels=strs(levels), **{"class": strs(["factor"])})


def frame(columns: dict, rownames):
    return rlist(columns.values(), list(columns), **{"class": strs(["data.frame"]), "row.names": strs(rownames)})


def dgc(dense, genes=None, cells=None):
    m = sp.csc_matrix(dense)
    dimnames = rlist([strs(genes) if genes else NULL, strs(cells) if cells else NULL])
    return s4("dgCMatrix", "Matrix", i=ints(m.indices), p=ints(m.indptr), Dim=ints(m.shape), Dimnames=dimnames,
              x=dbls(m.data), factors=rlist([]))


def empty_matrix():
    return dbls([], dim=ints([0, 0]))


def assay(counts, genes, cells):
    return s4("Assay", "SeuratObject", counts=counts, data=dgc(np.log1p(COUNTS), genes, cells),
              scale_data=empty_matrix(), key=strs(["rna_"]), assay_orig=NULL, var_features=strs([]),
              meta_features=frame({}, genes), misc=NULL)


META_ORDER = CELLS[::-1]  # meta.data rows in another order than the counts' columns: matched by name
CLUSTER = ["1", "0", None, "0", "2", "1", "0"]  # per cell of META_ORDER; levels keep their R order
SAMPLE = ["0h", "1h", "4h", None, "16h", "27h", "36h"]


def seurat_obj(assays=None, ident=True):
    """A Seurat v3/v4 object like GSE151658's: RNA counts, an integrated assay without counts, meta.data."""
    if assays is None:
        assays = {"RNA": assay(dgc(COUNTS, GENES, CELLS), GENES, CELLS),
                  "integrated": assay(dgc(np.zeros((0, 0))), GENES, CELLS)}
    meta = frame({"orig.ident": strs(SAMPLE),
                  "nCount_RNA": dbls([COUNTS[:, CELLS.index(c)].sum() for c in META_ORDER]),
                  "nFeature_RNA": ints([(COUNTS[:, CELLS.index(c)] > 0).sum() for c in META_ORDER]),
                  "integrated_snn_res.1": factor(CLUSTER, ["0", "1", "2"]),
                  "is_doublet": lgls([False] * 6 + [True])}, META_ORDER)
    ident_ = factor(CLUSTER, ["0", "1", "2"])
    ident_["attributes"]["names"] = strs(META_ORDER)
    return s4("Seurat", "SeuratObject", assays=rlist(assays.values(), list(assays)), meta_data=meta,
              active_assay=strs(["RNA"]), active_ident=ident_ if ident else NULL, graphs=rlist([]),
              neighbors=rlist([]), reductions=rlist([]), images=rlist([]), project_name=strs(["kidney"]),
              misc=rlist([]), version=rlist([ints([3, 2, 2])], **{"class": strs(["package_version"])}),
              commands=rlist([]), tools=rlist([]))


def write_rds(obj, path):
    """rds2py's native writer: R's gzip-compressed XDR (format version 3) from the dict form."""
    with contextlib.redirect_stdout(io.StringIO()):
        _native.write_rds(obj, str(path))
    return path


def gzip_again(path, out):
    """A GEO-style ``.rds.gz``: one more gzip layer around R's own gzip."""
    out.write_bytes(gzip.compress(path.read_bytes()))
    return out


def check_seurat(a):
    assert isinstance(a.X, sp.csr_matrix) and a.X.dtype == np.float32
    assert a.shape == (7, 5)  # cells x genes
    assert list(a.obs_names) == CELLS and list(a.var_names) == GENES
    np.testing.assert_array_equal(a.X.toarray(), COUNTS.T.astype(np.float32))
    by_cell = dict(zip(META_ORDER, CLUSTER))
    cl = a.obs["integrated_snn_res.1"]
    assert list(cl.cat.categories) == ["0", "1", "2"]
    assert [None if pd.isna(v) else v for v in cl] == [by_cell[c] for c in CELLS]
    assert [None if pd.isna(v) else v for v in a.obs["orig.ident"]] == [dict(zip(META_ORDER, SAMPLE))[c] for c in CELLS]
    np.testing.assert_allclose(a.obs["nCount_RNA"], COUNTS.sum(0))
    assert a.obs["nFeature_RNA"].tolist() == (COUNTS > 0).sum(0).tolist()
    assert a.obs["is_doublet"].tolist() == [c == META_ORDER[-1] for c in CELLS]
    assert [None if pd.isna(v) else v for v in a.obs["active.ident"]] == [by_cell[c] for c in CELLS]


# ---- tests ------------------------------------------------------------------------------------------

def test_seurat_object_counts_names_orientation_and_meta(tmp_path):
    check_seurat(read_seurat_rds(write_rds(seurat_obj(), tmp_path / "ref.rds")))


def test_geo_double_gzip_reads_the_same_and_leaves_no_temp_file(tmp_path, monkeypatch):
    made = []
    orig = seurat_rds._temp_path
    monkeypatch.setattr(seurat_rds, "_temp_path", lambda p: made.append(orig(p)) or made[-1])
    d = tmp_path / "geo"
    d.mkdir()
    src = gzip_again(write_rds(seurat_obj(), tmp_path / "ref.rds"), d / "GSE1_integrated.rds.gz")
    check_seurat(read_seurat_rds(src))
    assert len(made) == 1 and made[0].parent == d and made[0].name.startswith(".")  # decompressed next to it
    assert [p.name for p in d.iterdir()] == [src.name]
    sct = write_rds(seurat_obj({"SCT": assay(dgc(COUNTS, GENES, CELLS), GENES, CELLS)}), tmp_path / "s.rds")
    bad = gzip_again(sct, d / "sct.rds.gz")
    with pytest.raises(DatasetError, match=r"sct\.rds\.gz: Seurat object has no 'RNA' assay \(assays: \['SCT'\]\)"):
        read_seurat_rds(bad)
    assert len(made) == 2 and not made[1].exists()
    assert sorted(p.name for p in d.iterdir()) == sorted([src.name, bad.name])  # deleted after an error too


def test_bare_count_matrices(tmp_path):
    a = read_seurat_rds(write_rds(dgc(COUNTS, GENES, CELLS), tmp_path / "m.rds"))
    assert a.shape == (7, 5) and list(a.var_names) == GENES and list(a.obs_names) == CELLS and a.obs.shape[1] == 0
    np.testing.assert_array_equal(a.X.toarray(), COUNTS.T)
    dense = ints(COUNTS.round().T.ravel(), dim=ints([5, 7]), dimnames=rlist([strs(GENES), strs(CELLS)]))
    b = read_seurat_rds(write_rds(dense, tmp_path / "dense.rds"))  # column-major genes x cells
    np.testing.assert_array_equal(b.X.toarray(), COUNTS.round().T)
    coo = sp.coo_matrix(COUNTS)
    trip = s4("dgTMatrix", "Matrix", i=ints(coo.row), j=ints(coo.col), Dim=ints([5, 7]),
              Dimnames=rlist([strs(GENES), strs(CELLS)]), x=dbls(coo.data), factors=rlist([]))
    np.testing.assert_array_equal(read_seurat_rds(write_rds(trip, tmp_path / "t.rds")).X.toarray(), COUNTS.T)


def test_clear_errors_name_the_file_and_the_problem(tmp_path, monkeypatch):
    (tmp_path / "text.rds").write_text("gene,cell1\nLrp2,3\n")
    with pytest.raises(DatasetError, match=r"text\.rds: is not an R serialization written by saveRDS"):
        read_seurat_rds(tmp_path / "text.rds")
    sct = write_rds(seurat_obj({"SCT": assay(dgc(COUNTS, GENES, CELLS), GENES, CELLS)}), tmp_path / "sct.rds")
    with pytest.raises(DatasetError, match=r"sct\.rds: Seurat object has no 'RNA' assay \(assays: \['SCT'\]\)"):
        read_seurat_rds(sct)
    ref = write_rds(seurat_obj(), tmp_path / "ref.rds")
    with pytest.raises(DatasetError, match=r"ref\.rds: assay 'integrated' has an empty 'counts' slot \(0 x 0\); "
                                           r"raw counts are required \(slots: counts 0 x 0, data 5 x 7, "
                                           r"scale\.data 0 x 0; assays with counts: \['RNA'\]\)"):
        read_seurat_rds(ref, assay="integrated")
    with pytest.raises(DatasetError, match=r"lists\.rds: holds an R object of class \['vector'\], not a Seurat"):
        read_seurat_rds(write_rds(rlist([strs(["a"])], ["a"]), tmp_path / "lists.rds"))
    monkeypatch.setitem(sys.modules, "rds2py", None)  # as if the optional dependency were not installed
    monkeypatch.setitem(sys.modules, "rds2py.lib_rds_parser", None)
    with pytest.raises(DatasetError, match=r"ref\.rds: reading R \.rds files needs the optional package rds2py: "
                                           r"pip install rds2py"):
        read_seurat_rds(ref)


def test_load_scrna_reads_an_rds_reference(tmp_path):
    from stbench.data.loaders.scrna import load_scrna

    genes = ["ENSMUSG00000027070.9", *GENES[1:]]  # a versioned Ensembl id is harmonised
    assays = {"RNA": assay(dgc(COUNTS, genes, CELLS), genes, CELLS)}
    path = gzip_again(write_rds(seurat_obj(assays), tmp_path / "x.rds"), tmp_path / "GSE1_ref.rds.gz")
    a = load_scrna({"path": str(path)})
    assert list(a.var_names) == ["ENSMUSG00000027070", *GENES[1:]] and list(a.obs_names) == CELLS
    np.testing.assert_array_equal(a.layers["counts"].toarray(), COUNTS.T)
    np.testing.assert_array_equal(a.X.toarray(), COUNTS.T)
    assert a.obs["integrated_snn_res.1"].iloc[1] == dict(zip(META_ORDER, CLUSTER))[CELLS[1]]


def test_seurat_v5_layers_and_v2_raw_data(tmp_path):
    half = [CELLS[:4], CELLS[4:]]

    def logmap(rows, cols, mask):
        return lgls(np.asarray(mask).T.ravel(), dim=ints([len(rows), len(cols)]),
                    dimnames=rlist([strs(rows), strs(cols)]), **{"class": strs(["LogMap"])})

    layers = {"counts.1": dgc(COUNTS[:, :4]), "counts.2": dgc(COUNTS[[0, 2, 3, 4]][:, 4:])}  # split, no dimnames
    genes_mask = np.array([[1, 1], [1, 0], [1, 1], [1, 1], [1, 1]])  # Slc34a1 absent from the 2nd layer
    cells_mask = np.array([[c in h for h in half] for c in CELLS])
    a5 = s4("Assay5", "SeuratObject", layers=rlist(layers.values(), list(layers)),
            cells=logmap(CELLS, list(layers), cells_mask), features=logmap(GENES, list(layers), genes_mask),
            default=ints([1]), assay_orig=strs([]), meta_data=frame({}, GENES), misc=rlist([]), key=strs(["rna_"]))
    a = read_seurat_rds(write_rds(seurat_obj({"RNA": a5}), tmp_path / "v5.rds"))
    expected = COUNTS.T.copy()
    expected[4:, 1] = 0
    assert list(a.obs_names) == CELLS and list(a.var_names) == GENES
    np.testing.assert_array_equal(a.X.toarray(), expected)
    assert a.obs["integrated_snn_res.1"].notna().sum() == 6
    with pytest.raises(DatasetError, match=r"v5\.rds: Seurat v5 assay 'RNA' has no 'data' layer \(layers: "
                                           r"\['counts\.1', 'counts\.2'\]\)"):
        read_seurat_rds(tmp_path / "v5.rds", slot="data")

    extra = np.hstack([COUNTS, np.ones((5, 1))])  # v2 raw.data keeps a cell that was filtered out later
    v2 = s4("seurat", "Seurat", raw_data=dgc(extra, GENES, CELLS + ["dropped"]), data=dgc(COUNTS, GENES, CELLS),
            meta_data=seurat_obj()["attributes"]["meta.data"], ident=NULL)
    b = read_seurat_rds(write_rds(v2, tmp_path / "v2.rds"))
    assert list(b.obs_names) == META_ORDER
    np.testing.assert_array_equal(b.X.toarray(), COUNTS.T[::-1])


# ---- a small XDR serializer: R's own layout, with what rds2py's writer cannot write ------------------

class XDR:
    """Serialize the dict form like R does (symbols once, then references), plus ``{'type': 'closure'}``:
    a byte-compiled function defining symbols that later parts of the object reference."""

    def __init__(self, version=3):
        self.b = bytearray(b"X\n" + struct.pack(">iii", version, 0x040300, 0x030500 if version == 3 else 0x020300))
        if version == 3:
            self.i(5)
            self.b += b"UTF-8"
        self.syms = {}

    def i(self, *v):
        self.b += struct.pack(f">{len(v)}i", *v)

    def chars(self, s):
        e = s.encode()
        self.i(0x40009, len(e))  # CHARSXP, ASCII
        self.b += e

    def sym(self, name):
        if name in self.syms:
            self.i((self.syms[name] << 8) | 255)
        else:
            self.syms[name] = len(self.syms) + 1
            self.i(1)
            self.chars(name)

    def pairlist(self, items):
        for k, v in items:
            self.i(2 | 0x400)
            self.sym(k)
            self.obj(v)
        self.i(254)

    def obj(self, o):
        t, attrs = o["type"], dict(o.get("attributes") or {})
        if t == "null":
            return self.i(254)
        if t == "closure":  # function(tools, x) <bytecode: tools + x>, environment = globalenv
            self.i(3 | 0x400, 253)
            self.pairlist([("tools", {"type": "missing"}), ("x", {"type": "missing"})])
            self.i(21, 1)  # BCODESXP, one rep slot
            self.obj(ints([12, 1, 2]))  # code
            self.i(2, 6)  # two constants: a call, via the language encoding ...
            self.i(254)  # tag: NULL
            self.i(0)
            self.sym("+")  # CAR: padding, then an item
            self.i(244, 0, 2, 254, 0)  # CDR: BCREPDEF at 0, a LISTSXP cell, tag NULL, CAR:
            self.sym("tools")
            self.i(243, 0)  # CDR: BCREPREF 0
            self.i(0)  # ... and a plain constant
            return self.sym("x")
        if t == "missing":
            return self.i(251)
        if t == "S4":
            self.i(25 | 0x100 | 0x200 | (16 << 12))
            cls = {"type": "string", "data": [o["class_name"]],
                   "attributes": {"package": strs([o["package_name"]])}}
            return self.pairlist([*o["attributes"].items(), ("class", cls)])
        code = {"integer": 13, "double": 14, "boolean": 10, "string": 16, "vector": 19}[t]
        self.i(code | (0x200 if attrs else 0) | (0x100 if "class" in attrs else 0), len(o["data"]))
        if t == "string":
            for s in o["data"]:
                self.i(9, -1) if s is None else self.chars(s)
        elif t == "vector":
            for v in o["data"]:
                self.obj(v)
        else:
            self.b += np.asarray(o["data"], dtype=">f8" if t == "double" else ">i4").tobytes()
        if attrs:
            self.pairlist(attrs.items())


def test_closures_bytecode_and_format_version_2_are_read(tmp_path):
    """rds2py rejects functions (e.g. in Seurat ``commands``) and R < 3.5 files; both still load."""
    obj = seurat_obj()
    cmd = s4("SeuratCommand", "SeuratObject", name=strs(["IntegrateData"]),
             params=rlist([strs(["RNA"]), {"type": "closure"}], ["assay", "weights"]))
    obj["attributes"]["commands"] = rlist([cmd], ["IntegrateData"])
    obj["attributes"] = {"commands": obj["attributes"].pop("commands"), **obj["attributes"]}  # before 'tools'
    for version in (3, 2):
        w = XDR(version)
        w.obj(obj)
        path = tmp_path / f"v{version}.rds"
        path.write_bytes(gzip.compress(bytes(w.b)))
        with pytest.raises(Exception):  # the premise: rds2py alone cannot parse it
            _native.RdsObject(str(path))
        check_seurat(read_seurat_rds(path))
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    plain = XDR(2)
    plain.obj(seurat_obj())
    (tmp_path / "plain_v2.rds").write_bytes(bytes(plain.b))  # uncompressed, version 2: header rewritten only
    check_seurat(read_seurat_rds(tmp_path / "plain_v2.rds"))


def test_packaged_mk_reference_spec_reads_counts_and_cluster_labels(tmp_path):
    """MK's recipe (`geo` reference: GSE151658's Seurat .rds.gz, RNA counts, labels integrated_snn_res.1)."""
    from stbench.data.datasets import get_recipe
    from stbench.data.datasets.prepare import _resolved_spec
    from stbench.data.loaders import get_loader

    spec = get_recipe("MK")["sources"]["geo"]["reference"]
    gzip_again(write_rds(seurat_obj(), tmp_path / "x.rds"), tmp_path / spec["path"])
    ref = get_loader(spec["format"])(_resolved_spec(spec, tmp_path), tmp_path)
    np.testing.assert_array_equal(ref.layers["counts"].toarray(), COUNTS.T)  # RNA, not the integrated assay
    by_cell = dict(zip(META_ORDER, CLUSTER))
    assert ref.obs["cell_type"].tolist() == [by_cell[c] or "unlabelled" for c in CELLS]
