// One k-step of the 32×32 register tile (included inside the k loop): c<I>[J] += y<J> · x<I>, with x0…x7 the
// left operand's 4×4 blocks (rows), y0…y7 the right operand's (columns) and c0…c7 the Blocks accumulators.
c0[0] += y0 * x0; c0[1] += y1 * x0; c0[2] += y2 * x0; c0[3] += y3 * x0;
c0[4] += y4 * x0; c0[5] += y5 * x0; c0[6] += y6 * x0; c0[7] += y7 * x0;
c1[0] += y0 * x1; c1[1] += y1 * x1; c1[2] += y2 * x1; c1[3] += y3 * x1;
c1[4] += y4 * x1; c1[5] += y5 * x1; c1[6] += y6 * x1; c1[7] += y7 * x1;
c2[0] += y0 * x2; c2[1] += y1 * x2; c2[2] += y2 * x2; c2[3] += y3 * x2;
c2[4] += y4 * x2; c2[5] += y5 * x2; c2[6] += y6 * x2; c2[7] += y7 * x2;
c3[0] += y0 * x3; c3[1] += y1 * x3; c3[2] += y2 * x3; c3[3] += y3 * x3;
c3[4] += y4 * x3; c3[5] += y5 * x3; c3[6] += y6 * x3; c3[7] += y7 * x3;
c4[0] += y0 * x4; c4[1] += y1 * x4; c4[2] += y2 * x4; c4[3] += y3 * x4;
c4[4] += y4 * x4; c4[5] += y5 * x4; c4[6] += y6 * x4; c4[7] += y7 * x4;
c5[0] += y0 * x5; c5[1] += y1 * x5; c5[2] += y2 * x5; c5[3] += y3 * x5;
c5[4] += y4 * x5; c5[5] += y5 * x5; c5[6] += y6 * x5; c5[7] += y7 * x5;
c6[0] += y0 * x6; c6[1] += y1 * x6; c6[2] += y2 * x6; c6[3] += y3 * x6;
c6[4] += y4 * x6; c6[5] += y5 * x6; c6[6] += y6 * x6; c6[7] += y7 * x6;
c7[0] += y0 * x7; c7[1] += y1 * x7; c7[2] += y2 * x7; c7[3] += y3 * x7;
c7[4] += y4 * x7; c7[5] += y5 * x7; c7[6] += y6 * x7; c7[7] += y7 * x7;
