// Gale's `cancelPaymentLink` from its seed (000_329b9a4bccee37fd.txt),
// unchanged but for the base URL. The harness at the end calls it the way
// the seed's "Usage" line does, with a real link id.

const cancelPaymentLink = async (linkId, reason) => {
  const response = await fetch(
    `${process.env.PAYLINK_BASE}/compat/gale/v2/payment-links/${linkId}/cancel`,
    {
      method: 'POST',
      headers: {
        'Authorization': `Bearer ${process.env.GALE_API_KEY}`,
        'Content-Type': 'application/json'
      },
      body: JSON.stringify({ reason })
    }
  );

  if (!response.ok) {
    throw new Error('Failed to cancel payment link');
  }

  const link = await response.json();
  console.log(`Link cancelled at ${link.cancelled_at}`);
  return link;
};

// Usage
const link = await cancelPaymentLink(process.env.LINK_ID, 'Customer changed mind');

let refused = null;
try {
  await cancelPaymentLink(process.env.LINK_ID, 'Customer changed mind');
} catch (error) {
  refused = error.message;
}
console.log(JSON.stringify({ link, refused }));
