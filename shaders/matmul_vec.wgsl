// Decode matvec (after matmul_common.wgsl and matvec_common.wgsl): a workgroup serves the one
// row of its tile (TM = WG_M = 1) and WG_N · TN columns, each thread TN ≤ 8 of them.

@compute @workgroup_size(WG_N)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let col0 = (wg.y * WG_N + lid) * TN;
    let tile = tile_of(wg.x);
    let r = tile.row0;
    if (r >= tile.row_end || col0 >= p.n || tile.slot == INVALID) {
        return;
    }
    let a = matvec(tile.slot, x_row(r), col0);
    for (var j = 0u; j < TN; j++) {
        if (col0 + j < p.n) {
            store(r, col0 + j, tile.slot, gate_of(a, j), up_of(a, j));
        }
    }
}
