//! snarkjs' R1CS-to-QAP reduction.
//!
//! Both reductions interpolate `A·z` and `B·z` over the constraint domain of size `n`
//! (public inputs appended to `A` as extra rows). ark-groth16's then divides
//! `A·B − C` by the vanishing polynomial on a coset and hands the prover `h`'s
//! coefficients. snarkjs instead evaluates `A·B − C` at the odd 2n-th roots of unity,
//! where the vanishing polynomial is the constant −2, and its keys hold
//! `[L_{2j+1}(τ)/δ]₁` (Lagrange polynomials of the 2n-domain) in place of `[τ^j·Z(τ)/δ]₁`.
//! Since `A·B − C` has degree below 2n and vanishes on the even roots, the prover's MSM
//! of those evaluations against those bases gives `h(τ)·Z(τ)/δ` all the same.

use ark_ff::PrimeField;
use ark_groth16::r1cs_to_qap::{evaluate_constraint, LibsnarkReduction, R1CSToQAP};
use ark_poly::EvaluationDomain;
use ark_relations::gr1cs::{ConstraintSystemRef, Matrix, SynthesisError};
use rayon::prelude::*;

/// The reduction of keys made by a circom/snarkjs ceremony.
pub struct CircomReduction;

impl R1CSToQAP for CircomReduction {
    #[allow(clippy::type_complexity)]
    fn instance_map_with_evaluation<F: PrimeField, D: EvaluationDomain<F>>(
        cs: ConstraintSystemRef<F>,
        t: &F,
    ) -> Result<(Vec<F>, Vec<F>, Vec<F>, F, usize, usize), SynthesisError> {
        // The QAP polynomials themselves are the same; only h's basis differs.
        LibsnarkReduction::instance_map_with_evaluation::<F, D>(cs, t)
    }

    fn witness_map_from_matrices<F: PrimeField, D: EvaluationDomain<F>>(
        matrices: &[Matrix<F>],
        num_inputs: usize,
        num_constraints: usize,
        full_assignment: &[F],
    ) -> Result<Vec<F>, SynthesisError> {
        let domain =
            D::new(num_constraints + num_inputs).ok_or(SynthesisError::PolynomialDegreeTooLarge)?;
        let n = domain.size();
        let mut a = vec![F::zero(); n];
        let mut b = vec![F::zero(); n];
        a[..num_constraints]
            .par_iter_mut()
            .zip(&mut b[..num_constraints])
            .zip(&matrices[0])
            .zip(&matrices[1])
            .for_each(|(((a, b), a_row), b_row)| {
                *a = evaluate_constraint(a_row, full_assignment);
                *b = evaluate_constraint(b_row, full_assignment);
            });
        a[num_constraints..num_constraints + num_inputs]
            .copy_from_slice(&full_assignment[..num_inputs]);
        // C·z equals A·z ∘ B·z on the domain for a satisfying assignment (which the prover
        // checks first); snarkjs takes the product too, and it costs no matrix pass.
        let mut c: Vec<F> = a.par_iter().zip(&b).map(|(a, b)| *a * b).collect();

        // Evaluate all three at the odd 2n-th roots: the coset g·⟨ω⟩ with g² = ω.
        let double = D::new(2 * n).ok_or(SynthesisError::PolynomialDegreeTooLarge)?;
        let odd = domain
            .get_coset(double.group_gen())
            .ok_or(SynthesisError::PolynomialDegreeTooLarge)?;
        for values in [&mut a, &mut b, &mut c] {
            domain.ifft_in_place(values);
            odd.fft_in_place(values);
        }
        a.par_iter_mut()
            .zip(&b)
            .zip(&c)
            .for_each(|((a, b), c)| *a = *a * b - c);
        Ok(a)
    }

    fn h_query_scalars<F: PrimeField, D: EvaluationDomain<F>>(
        max_power: usize,
        t: F,
        _zt: F,
        delta_inverse: F,
    ) -> Result<Vec<F>, SynthesisError> {
        // ark-groth16's generator asks for n − 1 powers; this basis has one per odd root.
        let n = max_power + 1;
        let double = D::new(2 * n).ok_or(SynthesisError::PolynomialDegreeTooLarge)?;
        Ok(double
            .evaluate_all_lagrange_coefficients(t)
            .into_iter()
            .skip(1)
            .step_by(2)
            .map(|l| l * delta_inverse)
            .collect())
    }
}
