// Rotary position embedding in Hugging Face's rotate-half layout. x and y are [rows, heads·D] with row r at
// position start + r % T, or positions[r] when hasPositions (packed rows; a position outside the tables' `positions`
// rows writes NaN, never reads outside); cos and sin are [positions, D/2]. One work-item per pair (x[i], x[i + D/2]) of one head
// of one row, which it reads before it writes: y may alias x.
// sign = 1 rotates by the table's angle, −1 by its negative (the inverse, the gradient).

__kernel void rope(__global const float* x, __global float* y, __global const float* cos_table,
                   __global const float* sin_table, const int pairs, const int heads, const int half_dim,
                   const int seq_len, const int start, const float sign, __global const int* row_positions,
                   const int hasPositions, const int positions)
{
    const int id = get_global_id(0);
    if (id >= pairs) return;
    const int i = id % half_dim;
    const int head = id / half_dim;  // row·heads + h
    const int row = head / heads;
    const long base = (long)head * 2 * half_dim;
    const int position = hasPositions ? row_positions[row] : start + row % seq_len;
    if (position < 0 || position >= positions) {
        y[base + i] = NAN;
        y[base + half_dim + i] = NAN;
        return;
    }
    const int table = position * half_dim + i;
    const float c = cos_table[table], s = sign * sin_table[table];
    const float a = x[base + i], b = x[base + half_dim + i];
    y[base + i] = a * c - b * s;
    y[base + half_dim + i] = b * c + a * s;
}
